import { spawn } from 'node:child_process';
import test from 'ava';
import { supervise } from '../../src/supervised-process.js';

const node = (script: string) =>
  spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });

const exited = (child: ReturnType<typeof node>): Promise<unknown> =>
  new Promise((resolve) => child.once('close', resolve));

test('keeps only the last lines of the output, stderr included', async (t) => {
  const child = node("for (let n = 1; n <= 5; n++) console.log('out ' + n);");
  const supervised = supervise(child, { maxLogLines: 3 });
  await exited(child);
  t.true(supervised.hasExited());
  t.is(supervised.logTail(10), 'out 3\nout 4\nout 5');
  t.is(supervised.logTail(2), 'out 4\nout 5');

  const failing = node("console.error('first line\\n\\nsecond line')");
  const failed = supervise(failing, { maxLogLines: 3 });
  await exited(failing);
  t.is(failed.logTail(10), 'first line\nsecond line');
});

test('stop() ends a running process once and cleans up once, however often it is called', async (t) => {
  const child = node('setInterval(() => {}, 1000);');
  let cleanups = 0;
  const supervised = supervise(child, {
    maxLogLines: 10,
    cleanup: () => {
      cleanups += 1;
    },
  });
  t.false(supervised.hasExited());
  await Promise.all([supervised.stop(), supervised.stop()]);
  await supervised.stop();
  t.true(supervised.hasExited());
  t.is(child.signalCode, 'SIGTERM');
  t.is(cleanups, 1);
});

test('a process that ignores SIGTERM is killed after the grace period', async (t) => {
  const child = node("process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000);");
  const supervised = supervise(child, { maxLogLines: 10 });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  await supervised.stop();
  t.is(child.signalCode, 'SIGKILL');
});

test('a child registered with killOnExit does not outlive this process', async (t) => {
  // A parent process of our own, so the exit hook can run without ending the test process.
  const module = new URL('../../src/supervised-process.ts', import.meta.url).href;
  const parent = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import { spawn } from 'node:child_process';
       const { killOnExit } = await import(${JSON.stringify(module)});
       const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
       killOnExit(child);
       console.log(child.pid);
       setTimeout(() => process.exit(0), 200);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  parent.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await new Promise((resolve) => parent.once('close', resolve));
  const pid = Number(out.trim());
  t.true(pid > 0);
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 40 && alive(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  t.false(alive());
});
