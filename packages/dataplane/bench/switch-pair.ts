/**
 * Switch mode against router mode in one run: two data planes on memory
 * devices joined by real UDP on 127.0.0.1 (the native backend when built,
 * else js), one direction, AES-256-GCM, no compression. Router mode sends
 * 1400-byte IPv4 packets; switch mode sends the same packets as 1414-byte
 * Ethernet frames to a learned MAC (unicast, no flooding). Rounds alternate
 * router / switch; prints each round and the median ratio switch/router.
 * Not a test.
 *
 *   node packages/dataplane/dist/bench/switch-pair.js [seconds=2] [rounds=3]
 */
import { createMemoryTun, type MemoryTun } from '@cluevpn/tun/testing';
import { jsCryptoBackend, jsUdpBackend } from '../src/backend-js.js';
import { nativeAvailable, nativeCryptoBackend, nativeUdpBackend } from '../src/backend-native.js';
import { createDataplane, type Dataplane } from '../src/dataplane.js';
import { ipv4Packet, sessionPair } from '../test/pipeline-helpers.js';

const seconds = Number(process.argv[2] ?? 2);
const rounds = Number(process.argv[3] ?? 3);
const pkt = ipv4Packet('10.0.1.5', '10.0.2.9', 1380);
const MAC_A = Buffer.from('020000000a01', 'hex');
const MAC_B = Buffer.from('020000000b01', 'hex');
const frame = Buffer.concat([MAC_B, MAC_A, Buffer.from([0x08, 0x00]), pkt]);
const backend = (): { crypto: ReturnType<typeof jsCryptoBackend>; udp: ReturnType<typeof jsUdpBackend>; name: string } =>
  nativeAvailable() ? { crypto: nativeCryptoBackend(), udp: nativeUdpBackend(), name: 'native' } : { crypto: jsCryptoBackend(), udp: jsUdpBackend(), name: 'js' };

interface Side {
  dp: Dataplane;
  tun: MemoryTun;
}

async function pair(mode: 'router' | 'switch'): Promise<{ a: Side; b: Side; close(): void }> {
  const mk = async (): Promise<Side> => {
    const tun = createMemoryTun({ mode: mode === 'switch' ? 'tap' : 'tun', mtu: 1400 });
    const dp = await createDataplane({ tun, port: 0, bindAddress: '127.0.0.1', backends: backend(), mode });
    return { dp, tun };
  };
  const a = await mk();
  const b = await mk();
  a.dp.addPeer({ id: 'b', subnets: ['10.0.2.0/24'], endpoint: { host: '127.0.0.1', port: b.dp.port } });
  b.dp.addPeer({ id: 'a', subnets: ['10.0.1.0/24'], endpoint: { host: '127.0.0.1', port: a.dp.port } });
  const s = sessionPair();
  a.dp.installSession('b', s.a);
  b.dp.installSession('a', s.b);
  return { a, b, close: () => [a, b].forEach((x) => (x.dp.close(), x.tun.close())) };
}

async function run(mode: 'router' | 'switch'): Promise<number> {
  const p = await pair(mode);
  try {
    const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
    if (mode === 'switch') {
      // b learns nothing it needs; a must learn that MAC_B is behind b: one frame from b first
      p.b.tun.inject([Buffer.concat([MAC_A, MAC_B, Buffer.from([0x08, 0x00]), pkt])]);
      p.b.tun.flush();
      for (let i = 0; i < 20; i++) await tick();
      p.a.tun.written.length = 0;
    }
    const burst = Array.from({ length: 64 }, () => (mode === 'switch' ? frame : pkt));
    const measure = async (ms: number): Promise<{ received: number; elapsed: number }> => {
      const start = performance.now();
      const rx0 = p.b.dp.stats().peers[0]!.rxPackets;
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
      return { received: p.b.dp.stats().peers[0]!.rxPackets - rx0, elapsed: (performance.now() - start) / 1000 };
    };
    await measure(300);
    const m = await measure(seconds * 1000);
    const st = p.a.dp.stats();
    if (mode === 'switch' && st.switch!.flooded > 1) throw new Error(`switch bench flooded ${st.switch!.flooded} frames: MAC not learned`);
    return Math.round(m.received / m.elapsed);
  } finally {
    p.close();
  }
}

const results: Record<'router' | 'switch', number[]> = { router: [], switch: [] };
for (let r = 0; r < rounds; r++) {
  for (const mode of ['router', 'switch'] as const) {
    const pps = await run(mode);
    results[mode].push(pps);
    console.log(`round ${r + 1} ${mode.padEnd(6)} ${String(pps).padStart(8)} packets/s received (${backend().name})`);
  }
}
const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
console.log(`median router ${median(results.router)}, switch ${median(results.switch)} packets/s; ratio switch/router ${(median(results.switch) / median(results.router)).toFixed(2)}`);
