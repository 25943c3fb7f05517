import { readFileSync } from 'node:fs';
import test from 'ava';
import { COMMAND_NAMES, CONFIG_ENV, optionEntries } from '../../src/config.js';

// The reference is written by hand for readability; this keeps it from drifting from the option table.
const reference = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');

for (const command of COMMAND_NAMES) {
  test(`docs/cli.md documents every flag and env var of ${command}`, (t) => {
    const section = reference.split(`## \`readygate ${command}\``)[1]?.split('\n## ')[0];
    if (section === undefined) {
      t.fail(`no section for readygate ${command}`);
      return;
    }
    for (const [, option] of optionEntries(command)) {
      const flag = option.negatable ? `--[no-]${option.flag}` : `--${option.flag}`;
      t.true(section.includes(`\`${flag}`), `${command} ${flag}`);
      t.true(section.includes(`\`${option.env}\``), `${command} ${option.env}`);
      if (option.defaultText !== undefined && !['on', 'off'].includes(option.defaultText)) {
        t.true(
          section.includes(`\`${option.defaultText}\``),
          `${command} ${flag} default ${option.defaultText}`,
        );
      }
    }
  });
}

test('docs/cli.md documents --config and its env var', (t) => {
  t.true(reference.includes('`--config FILE`'));
  t.true(reference.includes(`\`${CONFIG_ENV}\``));
});
