import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diffBnl, type Bnl, type BnlNode } from '@cluevpn/bnl';
import type { Dataplane } from '@cluevpn/dataplane';
import type { HookRunner } from '../src/hooks.js';
import { createListApplier } from '../src/list-applier.js';
import { silentLogger } from '../src/logging.js';
import type { Mesh } from '../src/mesh.js';
import { createPeerDirectory } from '../src/peers.js';
import type { KernelRoutes } from '../src/routes.js';

const node = (name: string, id: number, subnets: string[], extra: Partial<BnlNode> = {}): BnlNode => ({
  name,
  id,
  endpoints: [{ host: `192.0.2.${id}`, port: 655 }],
  prefer: 'ipv4',
  subnets,
  ...extra,
});
const list = (serial: number, nodes: BnlNode[]): Bnl => ({ network: 'lab', serial, timestamp: serial * 1000, nodes });

/** The parts the applier drives, as fakes that write one journal of calls in order. */
function rig() {
  const calls: string[] = [];
  const gates: Array<() => void> = [];
  let gateHooks = false;
  let refuse: string | undefined;
  const dataplane = {
    addPeer: (p: { id: string; name: string; subnets: string[] }) => {
      if (p.name === refuse) throw new Error('refused');
      calls.push(`dp.addPeer ${p.name}#${p.id}`);
    },
    updatePeer: (id: string, p: { subnets: string[] }) => calls.push(`dp.updatePeer #${id} ${p.subnets.join(',')}`),
    removePeer: (id: string) => calls.push(`dp.removePeer #${id}`),
    setEndpoint: () => undefined,
    setLocalSubnets: (s: string[]) => calls.push(`dp.setLocalSubnets ${s.join(',')}`),
    setLocalMacs: () => undefined,
    setPolicy: () => calls.push('dp.setPolicy'),
  } as unknown as Dataplane;
  const peers = createPeerDirectory({ config: { disableipv6: false, preferipv6: false, resolveintervalMs: 3_600_000 }, logger: silentLogger });
  peers.attach(dataplane);
  const routes: KernelRoutes = {
    add: async (cidrs) => void (cidrs.length > 0 && calls.push(`routes.add ${cidrs.join(',')}`)), // the real one does nothing for none
    remove: async (cidr) => void calls.push(`routes.remove ${cidr}`),
    freeze: () => undefined,
  };
  const hooks = {
    run: async (hook: string, env: { SUBNET?: string; PEER?: string; PEERID?: string } = {}) => {
      calls.push(`hook ${hook} ${env.SUBNET} ${env.PEER}#${env.PEERID}`);
      if (gateHooks) await new Promise<void>((r) => gates.push(r));
      return { hook, ran: true, status: 0, signal: null, timedOut: false, ms: 0 };
    },
    idle: async () => undefined,
  } as unknown as HookRunner;
  const mesh = {
    removePeer: (name: string) => calls.push(`mesh.removePeer ${name}`),
    recheckConnections: () => (calls.push('mesh.recheck'), 0),
    followOwnPin: () => (calls.push('mesh.followOwnPin'), true),
  } as unknown as Mesh;
  const applier = createListApplier({ selfName: 'alpha', dataplane, peers, routes, hooks, mesh: () => mesh, logger: silentLogger });
  return {
    calls,
    peers,
    applier,
    gateHooks: (on: boolean) => (gateHooks = on),
    openGates: () => gates.splice(0).forEach((r) => r()),
    refuse: (name: string | undefined) => (refuse = name),
    close: () => peers.close(),
  };
}

const L1 = list(1, [node('alpha', 1, ['10.0.0.1/32']), node('beta', 2, ['10.0.0.2/32', '10.2.0.0/16']), node('gamma', 3, ['10.0.0.3/32'])]);

/** Runs `fn` on a rig whose applier has applied L1 at start, with the journal cleared. */
async function afterStart(fn: (r: ReturnType<typeof rig>) => Promise<void>): Promise<void> {
  const r = rig();
  try {
    await r.applier.start(L1);
    r.calls.length = 0;
    await fn(r);
  } finally {
    r.close();
  }
}

test('the list at start: our subnets, the access rules, then every other node a peer, then their routes in one batch; no hook until startHooks', async () => {
  const r = rig();
  try {
    await r.applier.start(L1);
    assert.deepEqual(r.calls, ['dp.setLocalSubnets 10.0.0.1/32', 'dp.setPolicy', 'dp.addPeer beta#2', 'dp.addPeer gamma#3', 'routes.add 10.0.0.2/32,10.2.0.0/16,10.0.0.3/32']);
    assert.equal(r.peers.idOf('beta'), '2');
    assert.equal(r.peers.nameOf('3'), 'gamma');
    assert.equal(r.peers.idOf('alpha'), undefined, 'this node is never a peer');
    assert.deepEqual([...r.peers.names()], ['beta', 'gamma']);
    r.calls.length = 0;
    await r.applier.startHooks(L1);
    assert.deepEqual(r.calls, ['hook subnetupcmd 10.0.0.2/32 beta#2', 'hook subnetupcmd 10.2.0.0/16 beta#2', 'hook subnetupcmd 10.0.0.3/32 gamma#3']);
  } finally {
    r.close();
  }
});

test('a newer list: rules, connections re-checked, removed nodes forgotten by the mesh then the data plane, added and changed nodes, each directory entry in step', async () => {
  await afterStart(async (r) => {
    // gamma removed, delta added, beta's subnets changed
    const L2 = list(2, [node('alpha', 1, ['10.0.0.1/32']), node('beta', 2, ['10.0.0.2/32', '10.4.0.0/16']), node('delta', 4, ['10.0.0.4/32'])]);
    await r.applier.apply(diffBnl(L1, L2), L2);
    assert.deepEqual(r.calls, [
      'dp.setPolicy',
      'mesh.recheck',
      'mesh.removePeer gamma',
      'dp.removePeer #3',
      'routes.remove 10.0.0.3/32',
      'hook subnetdowncmd 10.0.0.3/32 gamma#3',
      'dp.addPeer delta#4',
      'routes.add 10.0.0.4/32',
      'hook subnetupcmd 10.0.0.4/32 delta#4',
      'dp.updatePeer #2 10.0.0.2/32,10.4.0.0/16',
      'routes.remove 10.2.0.0/16',
      'hook subnetdowncmd 10.2.0.0/16 beta#2',
      'routes.add 10.4.0.0/16',
      'hook subnetupcmd 10.4.0.0/16 beta#2',
    ]);
    assert.equal(r.peers.idOf('gamma'), undefined);
    assert.equal(r.peers.nameOf('3'), undefined);
    assert.equal(r.peers.nameOf('4'), 'delta');
  });
});

test('a changed id or pin replaces the peer (revoke, then add); a change of our own record moves our subnets and follows our pin', async () => {
  await afterStart(async (r) => {
    const L2 = list(2, [node('alpha', 1, ['10.0.0.1/32', '10.1.0.0/16'], { fingerprint: 'aa'.repeat(32) }), node('beta', 7, ['10.0.0.2/32', '10.2.0.0/16']), node('gamma', 3, ['10.0.0.3/32'], { fingerprint: 'bb'.repeat(32) })]);
    await r.applier.apply(diffBnl(L1, L2), L2);
    assert.deepEqual(r.calls, [
      'dp.setPolicy',
      'mesh.recheck',
      'dp.setLocalSubnets 10.0.0.1/32,10.1.0.0/16',
      'mesh.followOwnPin',
      'mesh.removePeer beta',
      'dp.removePeer #2',
      'dp.addPeer beta#7',
      'mesh.removePeer gamma',
      'dp.removePeer #3',
      'dp.addPeer gamma#3',
    ]);
    assert.equal(r.peers.nameOf('2'), undefined, 'the old id is gone');
    assert.equal(r.peers.idOf('beta'), '7');
  });
});

test('lists are applied one at a time in the order given, and a list that fails does not stop the next', async () => {
  await afterStart(async (r) => {
    const L2 = list(2, [...L1.nodes, node('delta', 4, ['10.0.0.4/32'])]);
    const L3 = list(3, L2.nodes.filter((n) => n.name !== 'gamma'));
    r.gateHooks(true);
    const first = r.applier.apply(diffBnl(L1, L2), L2);
    const second = r.applier.apply(diffBnl(L2, L3), L3);
    await new Promise((res) => setTimeout(res, 20));
    assert.ok(r.calls.includes('hook subnetupcmd 10.0.0.4/32 delta#4'), 'the first list is being applied');
    assert.ok(!r.calls.includes('mesh.removePeer gamma'), 'the second waits until the first is applied');
    r.gateHooks(false);
    r.openGates();
    await first;
    await second;
    assert.ok(r.calls.indexOf('mesh.removePeer gamma') > r.calls.indexOf('hook subnetupcmd 10.0.0.4/32 delta#4'));

    // a list whose new peer the data plane refuses: that list fails, the next one is applied
    r.refuse('epsilon');
    r.calls.length = 0;
    const L4 = list(4, [...L3.nodes, node('epsilon', 5, ['10.0.0.5/32'])]);
    const L5 = list(5, L3.nodes.filter((n) => n.name !== 'delta'));
    const bad = r.applier.apply(diffBnl(L3, L4), L4);
    const next = r.applier.apply(diffBnl(L4, L5), L5);
    await assert.rejects(bad, /refused/);
    await next;
    assert.ok(r.calls.includes('mesh.removePeer delta'), 'the list after a failed one is applied');
  });
});
