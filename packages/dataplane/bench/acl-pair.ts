/**
 * Cost of the access policy in the pipelines alone (no kernel TUN, no
 * express path: memory TUNs, real UDP on 127.0.0.1, the native backend when
 * built): the in-process pair of loopback-pair.ts, 1400-byte IPv4 TCP
 * packets a → b, alternating in one run between no policy and a policy on
 * both sides — b: N rules (default 100) with the one that allows the flow
 * last, a: no rules (its outbound packets are tracked) — ROUNDS windows of
 * SECONDS each. Prints packets/s per window, the medians and
 *   acl-pair: rules=N none=PPS policy=PPS ratio=R
 * Not a test.
 *
 *   node packages/dataplane/dist/bench/acl-pair.js [seconds=1] [rounds=5] [rules=100]
 */
import type { AclPolicy } from '../src/acl.js';
import { fullBackends, makePair } from '../test/pipeline-harness.js';
import { ipv4Packet } from '../test/pipeline-helpers.js';

const seconds = Number(process.argv[2] ?? 1);
const rounds = Number(process.argv[3] ?? 5);
const nRules = Number(process.argv[4] ?? 100);
const tcp = Buffer.alloc(1380);
tcp.writeUInt16BE(40000, 0);
tcp.writeUInt16BE(5201, 2);
tcp[12] = 0x50;
tcp[13] = 0x10;
const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', tcp, 6);
const burst = Array.from({ length: 64 }, () => pkt);
const rules: AclPolicy['rules'][number][] = [];
for (let i = 0; i < nRules - 1; i++) rules.push({ from: [`10.1.${i & 0xff}.0/24`], to: ['10.0.2.0/24'], proto: 'tcp', ports: [[10000 + i, 10000 + i]] });
rules.push({ from: ['10.0.1.0/24'], to: ['10.0.2.0/24'], proto: 'tcp', ports: [[5201, 5201]] });

const [name, real] = fullBackends().at(-1)!;
const p = await makePair({ real, host: '127.0.0.1' });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const measure = async (ms: number): Promise<number> => {
  const start = performance.now();
  const rx0 = p.b.dp.stats().peers[0].rxPackets;
  let n = 0;
  while (performance.now() - start < ms) {
    p.a.tun.inject(burst);
    p.a.tun.flush();
    if (++n % 2 === 0) {
      await tick();
      p.b.tun.written.length = 0;
    }
  }
  for (let i = 0; i < 50; i++) await tick();
  p.b.tun.written.length = 0;
  return (p.b.dp.stats().peers[0].rxPackets - rx0) / ((performance.now() - start) / 1000);
};
const set = (on: boolean): void => {
  p.a.dp.setPolicy(on ? { serial: 1, rules: [] } : null);
  p.b.dp.setPolicy(on ? { serial: 1, rules } : null);
};
const none: number[] = [];
const policy: number[] = [];
try {
  await measure(300); // warm-up
  for (let r = 1; r <= rounds; r++) {
    for (const on of [false, true]) {
      set(on);
      const pps = await measure(seconds * 1000);
      (on ? policy : none).push(pps);
      console.log(`round ${r} ${on ? `${nRules} rules` : 'no policy'}: ${Math.round(pps)} packets/s`);
    }
  }
  const drops = p.b.dp.stats().drops.acl ?? 0;
  if (drops > 0) throw new Error(`${drops} packets dropped as acl: the benchmark's flow must be allowed`);
} finally {
  p.close();
}
const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
console.log(`acl-pair: backend=${name} rules=${nRules} none=${Math.round(med(none))} policy=${Math.round(med(policy))} ratio=${(med(policy) / med(none)).toFixed(2)}`);
