// In-process part of scripts/bench/scale: the list handling of one daemon at
// N nodes, without processes or a network (run with --expose-gc).
//
//   node --expose-gc scripts/bench/lib/scale-inproc.mjs list N…   one JSON line per N
//   node scripts/bench/lib/scale-inproc.mjs tun N                  (as root, inside a netns) one JSON line
//
// `list N` measures, for a signed list of N nodes (makeTestBnl: one endpoint
// and one /24 per node), each step the daemon takes with it:
//   (load and diffs: best of 3 runs; the first also compiles)
//   load     BnlStore.open: size cap, strict parse, validation (overlap check
//            included), canonical re-encode, Ed25519 verify
//   diff     diffBnl(null, list) (start) and diffBnl(list, list') (one node changed)
//   peers    dataplane.addPeer for the N-1 other nodes (memory TUN and UDP,
//            the daemon's peer table and routing table)
//   remove   dataplane.removePeer for 10 % of them (a revocation burst)
//   lpm      ns per longest-prefix lookup in the data plane's PrefixTable
//            with the N prefixes (random addresses inside them; 2 M lookups)
//   heap     V8 heap retained by the peer table (after gc), and the
//            ArrayBuffer bytes (the Buffer pool slabs of its small arrays)
// `tun N` opens a real TUN and adds N /32 routes to it in one rtnetlink
// exchange (TunDevice.addRoutes, what the daemon does at start).
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const dist = (p, f = 'index.js') => join(REPO, 'packages', p, 'dist/src', f);
const now = () => performance.now();
const gc = globalThis.gc ?? (() => {});

const [mode, ...ns] = process.argv.slice(2);
if (!['list', 'tun'].includes(mode) || ns.length === 0 || !ns.every((x) => /^[1-9][0-9]*$/.test(x))) {
  process.stderr.write('usage: scale-inproc.mjs list N… | tun N\n');
  process.exit(2);
}

if (mode === 'tun') {
  const { openTun } = await import(dist('tun'));
  const n = Number(ns[0]);
  const tun = openTun({ name: 'scaletun0', mode: 'tun', mtu: 1420 });
  try {
    tun.up();
    await tun.addAddress('10.250.0.1/32');
    const cidrs = Array.from({ length: n }, (_, k) => `10.${100 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}/32`);
    const t = now();
    const res = await tun.addRoutes(cidrs);
    const ms = now() - t;
    const failed = res.filter((e) => e !== null);
    process.stdout.write(`${JSON.stringify({ n, addRoutesMs: ms, failed: failed.length, firstError: failed[0]?.code ?? null })}\n`);
  } finally {
    tun.close();
  }
  process.exit(0);
}

const bnl = await import(dist('bnl'));
const { createMemoryStorage, makeTestBnl } = await import(dist('bnl', 'testing.js'));
const dp = await import(dist('dataplane'));
const { createMemoryUdpNetwork } = await import(dist('dataplane', 'testing.js'));
const { createMemoryTun } = await import(dist('tun', 'testing.js'));
const require = createRequire(import.meta.url);
void require;

const key = bnl.generateSigningKey();
const priv = bnl.parsePrivateKey(key.privateKeyPem);
const trust = bnl.createTrust([key.publicKey]);

for (const nStr of ns) {
  const n = Number(nStr);
  const r = { n };
  const v1 = bnl.signBnl(bnl.createUnsignedBnl(makeTestBnl(n, { serial: 1 })), [priv]);
  const b2 = makeTestBnl(n, { serial: 2 });
  b2.nodes[n >> 1] = { ...b2.nodes[n >> 1], tags: ['changed'] };
  const v2 = bnl.signBnl(bnl.createUnsignedBnl(b2), [priv]);
  r.listBytes = v1.bytes.length;

  // load: best of 3 (the first run also compiles)
  let best = Infinity;
  let store;
  for (let k = 0; k < 3; k++) {
    gc();
    const t = now();
    store = await bnl.BnlStore.open({ storage: createMemoryStorage({ list: v1.bytes }), trust });
    best = Math.min(best, now() - t);
  }
  r.loadMs = best;
  const bestOf3 = (fn) => {
    let b = Infinity;
    for (let k = 0; k < 3; k++) {
      const t0 = now();
      fn();
      b = Math.min(b, now() - t0);
    }
    return b;
  };
  r.diffStartMs = bestOf3(() => bnl.diffBnl(null, store.current.bnl));
  const offer = await store.offer(v2.bytes);
  if (!offer.accepted || offer.diff.changed.length !== 1) throw new Error(`offer of the changed list: ${JSON.stringify(offer.code ?? offer.diff.changed.length)}`);
  r.diffOneChangeMs = bestOf3(() => bnl.diffBnl(v1.bnl, v2.bnl));
  let t;

  // peers
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const ab0 = process.memoryUsage().arrayBuffers;
  const tun = createMemoryTun({ mtu: 1420 });
  const plane = await dp.createDataplane({ tun, port: 0, backends: { crypto: dp.jsCryptoBackend(), udp: createMemoryUdpNetwork(), name: 'memory' } });
  const others = store.current.bnl.nodes.slice(1);
  t = now();
  for (const node of others) plane.addPeer({ id: String(node.id), name: node.name, subnets: node.subnets, endpoint: node.endpoints[0] });
  r.addPeersMs = now() - t;
  gc();
  r.peerHeapBytesPerPeer = (process.memoryUsage().heapUsed - heap0) / others.length;
  r.peerArrayBufferBytesPerPeer = (process.memoryUsage().arrayBuffers - ab0) / others.length; // Node's Buffer pool slabs the peers' small arrays live in
  const victims = others.filter((_, k) => k % 10 === 0);
  t = now();
  for (const node of victims) plane.removePeer(String(node.id));
  r.removePeersMs = now() - t;
  r.removed = victims.length;
  await plane.close();
  tun.close?.();

  // lpm: the same prefixes in a bare PrefixTable
  const table = new dp.PrefixTable();
  const prefixes = store.current.bnl.nodes.flatMap((x) => x.subnets);
  prefixes.forEach((p, k) => table.insert(dp.parsePrefix(p), k));
  const probes = new Uint8Array(4 * 4096);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed);
  for (let k = 0; k < 4096; k++) {
    const p = dp.parsePrefix(prefixes[rnd() % prefixes.length]);
    probes.set(p.bytes.subarray(0, 4), 4 * k);
    probes[4 * k + 3] = rnd() & 255; // a host inside the /24
  }
  const LOOKUPS = 2_000_000;
  let hits = 0;
  for (let k = 0; k < 200_000; k++) hits += table.lookup(probes, 4 * (k & 4095), 4) >= 0 ? 1 : 0; // warm up
  hits = 0;
  t = now();
  for (let k = 0; k < LOOKUPS; k++) hits += table.lookup(probes, 4 * (k & 4095), 4) >= 0 ? 1 : 0;
  r.lpmNsPerLookup = ((now() - t) * 1e6) / LOOKUPS;
  if (hits !== LOOKUPS) throw new Error(`lpm: ${LOOKUPS - hits} lookups missed`);
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
