// Preloaded with `node --import` by tests that check what a command loads: prints one marker line on
// stderr whenever @kubernetes/client-node is resolved, so a test can assert it never was.
import { registerHooks } from 'node:module';

export const CLIENT_NODE_MARKER = 'test-hook: @kubernetes/client-node resolved';

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === '@kubernetes/client-node' || specifier.startsWith('@kubernetes/client-node/')) {
      process.stderr.write(`${CLIENT_NODE_MARKER}\n`);
    }
    return nextResolve(specifier, context);
  },
});
