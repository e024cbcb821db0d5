// Cold-process CPU of a daemon's list steps at start (issue 19), for A/B
// comparisons between two built trees: each measurement runs in a fresh
// node process, so it counts what a starting daemon pays (code not yet
// optimised, young generation not yet grown), unlike scale-inproc.mjs,
// which takes the best of 3 warm runs.
//
//   node scripts/bench/lib/start-cold.mjs [--nodes 10000] [--runs 6] [TREE…]
//
// TREE is a repository root with built dist/ (default: this one). A signed
// list of --nodes nodes (makeTestBnl) is written once to a temp dir; then for
// each run, for each TREE in turn (interleaved, so load drifts hit all
// alike; the order reversed every other run), one child process measures with process.cpuUsage (all threads,
// so V8's background compilation and GC count):
//   load    BnlStore.open of the list (parse, validate, canonical check, verify)
//   start   ListApplier.start: every other node a peer (the daemon's peer
//           directory and a data plane on memory TUN/UDP), routes to a stub
//   addPeer Dataplane.addPeer alone for N-1 records (a fresh process)
// and prints one line per TREE with the medians.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const REPO = resolve(dirname(SELF), '../../..');
const pkg = (tree, p, f = 'index.js') => join(tree, 'packages', p, 'dist/src', f);
const cpuMs = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };

const [mode, ...rest] = process.argv.slice(2);
if (mode === '--child-start' || mode === '--child-addpeer') {
  const [tree, dir] = rest;
  const bnl = await import(pkg(tree, 'bnl'));
  const { createMemoryStorage } = await import(pkg(tree, 'bnl', 'testing.js'));
  const dp = await import(pkg(tree, 'dataplane'));
  const { createMemoryUdpNetwork } = await import(pkg(tree, 'dataplane', 'testing.js'));
  const { createMemoryTun } = await import(pkg(tree, 'tun', 'testing.js'));
  const plane = await dp.createDataplane({ tun: createMemoryTun({ mtu: 1420 }), port: 0, backends: { crypto: dp.jsCryptoBackend(), udp: createMemoryUdpNetwork(), name: 'memory' } });
  if (mode === '--child-addpeer') {
    const n = Number(readFileSync(join(dir, 'n'), 'utf8'));
    const recs = Array.from({ length: n - 1 }, (_, k) => ({ id: String(k + 2), name: `n${k + 2}`, subnets: [`10.${100 + ((k + 2) >> 16)}.${((k + 2) >> 8) & 255}.${(k + 2) & 255}/32`], endpoint: { host: `172.16.${(k >> 8) & 255}.${k & 255}`, port: 655 } }));
    const c0 = cpuMs();
    for (const r of recs) plane.addPeer(r);
    process.stdout.write(JSON.stringify({ addPeer: cpuMs() - c0 }));
    process.exit(0);
  }
  const { createListApplier } = await import(pkg(tree, 'daemon', 'list-applier.js'));
  const { createPeerDirectory } = await import(pkg(tree, 'daemon', 'peers.js'));
  const { silentLogger } = await import(pkg(tree, 'daemon', 'logging.js'));
  const trust = bnl.createTrust([readFileSync(join(dir, 'key'), 'utf8')]);
  const bytes = readFileSync(join(dir, 'list'));
  const c0 = cpuMs();
  const store = await bnl.BnlStore.open({ storage: createMemoryStorage({ list: bytes }), trust });
  const c1 = cpuMs();
  const peers = createPeerDirectory({ config: { disableipv6: false, preferipv6: false, resolveintervalMs: 3_600_000 }, logger: silentLogger });
  peers.attach(plane);
  const routes = { add: async () => undefined, remove: async () => undefined, freeze: () => undefined };
  const hooks = { run: async () => ({ ran: false }), idle: async () => undefined };
  const list = store.current.bnl;
  const applier = createListApplier({ selfName: list.nodes[0].name, dataplane: plane, peers, routes, hooks, mesh: () => undefined, logger: silentLogger });
  const c2 = cpuMs();
  await applier.start(list);
  process.stdout.write(JSON.stringify({ load: c1 - c0, start: cpuMs() - c2 }));
  process.exit(0);
}

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); if (i < 0) return dflt; const v = Number(args[i + 1]); args.splice(i, 2); return v; };
const nodes = opt('--nodes', 10000);
const runs = opt('--runs', 6);
const trees = args.length > 0 ? args.map((t) => resolve(t)) : [REPO];
const dir = mkdtempSync(join(tmpdir(), 'start-cold-'));
try {
  const bnl = await import(pkg(trees[0], 'bnl'));
  const { makeTestBnl } = await import(pkg(trees[0], 'bnl', 'testing.js'));
  const key = bnl.generateSigningKey();
  const signed = bnl.signBnl(bnl.createUnsignedBnl(makeTestBnl(nodes, { serial: 1 })), [bnl.parsePrivateKey(key.privateKeyPem)]);
  writeFileSync(join(dir, 'list'), signed.bytes);
  writeFileSync(join(dir, 'key'), key.publicKey);
  writeFileSync(join(dir, 'n'), String(nodes));
  const got = trees.map(() => ({ load: [], start: [], addPeer: [] }));
  const child = (m, tree) => {
    const r = spawnSync(process.execPath, [SELF, m, tree, dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${m} ${tree}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  for (let k = 0; k < runs; k++) {
    const order = trees.map((t, i) => [t, i]);
    if (k % 2 === 1) order.reverse(); // the first tree of a round measured faster: alternate
    order.forEach(([t, i]) => {
      const a = child('--child-start', t);
      const b = child('--child-addpeer', t);
      got[i].load.push(a.load);
      got[i].start.push(a.start);
      got[i].addPeer.push(b.addPeer);
    });
  }
  const med = (v) => [...v].sort((a, b) => a - b)[v.length >> 1].toFixed(0);
  process.stdout.write(`start-cold: ${nodes} nodes, ${runs} runs, median CPU ms (all threads) per fresh process\n`);
  trees.forEach((t, i) => process.stdout.write(`${t}  load ${med(got[i].load)}  applier.start ${med(got[i].start)}  addPeer ${med(got[i].addPeer)}\n`));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
