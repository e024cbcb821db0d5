import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import type { BnlStore } from '@cluevpn/bnl';
import type { ListApplier } from '../src/list-applier.js';
import { silentLogger } from '../src/logging.js';
import type { Mesh } from '../src/mesh.js';
import { createReloader, RELOAD_PUSH_WAIT_MS } from '../src/reload.js';

/**
 * The answer to a reload-and-push is bound to come within 3 s of the request
 * (issue 19): with pushes that never finish (unreachable nodes), the reloader
 * answers when its wait runs out, on the timer clock (mocked: no machine speed
 * assumed), and counts what was pushed and what is still pending.
 */
test('reload-and-push answers by 2.5 s of timer time while pushes hang, counting pushed and pending', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const list = { bnl: { serial: 7, nodes: [] } };
    const store = {
      current: list,
      reloadFromDisk: async () => ({ accepted: true, list, diff: { added: [], removed: [], changed: [] } }),
    } as unknown as BnlStore;
    const applier = { apply: async () => undefined } as unknown as ListApplier;
    const progress = { ok: 0, failed: 0, targets: 5, done: new Promise<void>(() => undefined) };
    const mesh = {
      reloadCredentials: () => undefined,
      pushToAll: () => progress,
    } as unknown as Mesh;
    const reload = createReloader({ store, applier, mesh, logger: silentLogger });
    let answer: Awaited<ReturnType<typeof reload>> | undefined;
    void reload().then((a) => (answer = a));
    for (let i = 0; i < 10; i++) await Promise.resolve(); // the load and apply resolve
    progress.ok = 2; // two pushes landed, three hang
    progress.failed = 1;
    mock.timers.tick(2500);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(answer, { serial: 7, applied: true, pushedTo: 2, pushTargets: 5, pushFailed: 1, pushPending: 2 });
    assert.ok(RELOAD_PUSH_WAIT_MS < 3000);
  } finally {
    mock.timers.reset();
  }
});
