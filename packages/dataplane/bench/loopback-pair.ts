/**
 * Throughput of the in-process loopback pair: two data planes on memory
 * TUNs joined by real UDP on 127.0.0.1, one direction, 1400-byte IPv4
 * packets, AES-256-GCM, no compression. Prints packets/s per backend in
 * one run (the JS backend is the anchor). Not a test.
 *
 *   node packages/dataplane/dist/bench/loopback-pair.js [seconds=2] [pmtu]
 *
 * With `pmtu`, each backend also runs with path-MTU discovery and the MSS
 * clamp on (what cluevpnd runs by default), in the same run, for the ratio.
 */
import { fullBackends, makePair } from '../test/pipeline-harness.js';
import { ipv4Packet } from '../test/pipeline-helpers.js';

const seconds = Number(process.argv[2] ?? 2);
const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 1380);
const burst = Array.from({ length: 64 }, () => pkt);

const withPmtu = process.argv[3] === 'pmtu';

async function run(name: string, real: NonNullable<Parameters<typeof makePair>[0]>['real'], pmtu = false): Promise<{ name: string; sent: number; received: number; pps: number; mbps: number }> {
  const p = await makePair({ real, host: '127.0.0.1', ...(pmtu ? { extra: { pmtuDiscovery: true, clampMss: true } } : {}) });
  try {
    const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
    const measure = async (ms: number): Promise<{ sent: number; received: number; elapsed: number }> => {
      const start = performance.now();
      const sent0 = p.a.dp.stats().peers[0].txPackets;
      const rx0 = p.b.dp.stats().peers[0].rxPackets;
      let rounds = 0;
      while (performance.now() - start < ms) {
        p.a.tun.inject(burst);
        p.a.tun.flush();
        if (++rounds % 2 === 0) {
          await tick();
          p.b.tun.written.length = 0;
        }
      }
      // drain
      for (let i = 0; i < 50; i++) await tick();
      const elapsed = (performance.now() - start) / 1000;
      return { sent: p.a.dp.stats().peers[0].txPackets - sent0, received: p.b.dp.stats().peers[0].rxPackets - rx0, elapsed };
    };
    await measure(300); // warm-up
    const m = await measure(seconds * 1000);
    const pps = m.received / m.elapsed;
    return { name, sent: m.sent, received: m.received, pps: Math.round(pps), mbps: Math.round((pps * pkt.length * 8) / 1e6) };
  } finally {
    p.close();
  }
}

const rows = [];
for (const [name, real] of fullBackends()) {
  rows.push(await run(name, real));
  if (withPmtu) rows.push(await run(`${name}+pmtu`, real, true));
}
const anchor = rows[0].pps;
for (const r of rows) {
  console.log(
    `${r.name.padEnd(11)} ${String(r.pps).padStart(8)} packets/s received  ${String(r.mbps).padStart(5)} Mbit/s inner  sent ${r.sent} received ${r.received} (loss ${(100 * (1 - r.received / Math.max(1, r.sent))).toFixed(1)} %)  ratio to js ${(r.pps / anchor).toFixed(2)}`,
  );
}
