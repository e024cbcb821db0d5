/**
 * Benchmark (not a test): packets per second reading a burst out of a TUN
 * device, batched (batchSize 64) against one packet per JS call
 * (batchSize 1), in the same run.
 *
 *   node packages/tun/dist/bench/read-burst.js [packets=20000] [rounds=5]
 *
 * Needs root. Creates namespace tun-bench-<pid> and deletes it afterwards.
 * Per round and batch size, inside the namespace:
 *   1. open the device (no reader yet), txqueuelen = packets, route 10.98.0.0/24 into it;
 *   2. send `packets` UDP datagrams of 64 bytes payload at 10.98.0.7 (they wait in the
 *      device's queue: nothing reads yet) and wait until every send completed;
 *   3. set the handler (which touches every packet) and time until all were read.
 * Prints the median rate per batch size and their ratio.
 */
import dgram from 'node:dgram';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openTun } from '../src/index.js';

async function measure(batchSize: number, packets: number): Promise<number> {
  const t = openTun({ name: 'tunbench0', batchSize });
  try {
    t.up();
    execFileSync('ip', ['link', 'set', t.name, 'txqueuelen', String(packets + 100)]); // + room for IPv6 RS/MLD packets
    await t.addAddress('10.99.0.1/24');
    await t.addRoute('10.98.0.0/24');
    // A UDP socket's send buffer holds only ~250 queued datagrams (the skbs stay
    // charged to it while they wait in the device's ring), so spread the burst.
    const perSocket = 200;
    const socks: dgram.Socket[] = [];
    for (let k = 0; k * perSocket < packets; k++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '10.99.0.1', r));
      socks.push(s);
    }
    const payload = Buffer.alloc(64, 0x61);
    let sent = 0;
    let failed = 0;
    await new Promise<void>((resolve) => {
      for (let i = 0; i < packets; i++) {
        socks[Math.floor(i / perSocket)].send(payload, 9999, '10.98.0.7', (e) => {
          if (e) failed++;
          if (++sent === packets) resolve();
        });
      }
    });
    if (failed > 0) throw new Error(`${failed} sends failed`);
    let got = 0;
    let bytes = 0;
    const start = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${got} of ${packets} (stats ${JSON.stringify(t.stats())})`)), 10_000);
      t.onPackets((b) => {
        for (let i = 0; i < b.count; i++) {
          // Touch each packet; count only our UDP datagrams (not IPv6 router solicitations).
          if (b.buffer[b.offsets[i] + 9] === 17) {
            got++;
            bytes += b.lengths[i];
          }
        }
        if (got >= packets) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const ns = Number(process.hrtime.bigint() - start);
    // Closed only now: closing a socket earlier loses its datagrams still queued in the device.
    for (const s of socks) s.close();
    if (bytes === 0) throw new Error('no data read');
    return (got / ns) * 1e9;
  } finally {
    t.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function child(packets: number, rounds: number): Promise<void> {
  const rates: Record<number, number[]> = { 64: [], 1: [] };
  for (let r = 0; r < rounds; r++) {
    for (const b of [64, 1]) rates[b].push(await measure(b, packets));
  }
  const m64 = median(rates[64]);
  const m1 = median(rates[1]);
  const fmt = (x: number): string => `${(x / 1000).toFixed(0)} kpps`;
  console.log(`TUN read burst: ${packets} packets x ${rounds} rounds (median)`);
  console.log(`  batchSize 64: ${fmt(m64)}   (rounds: ${rates[64].map(fmt).join(', ')})`);
  console.log(`  batchSize  1: ${fmt(m1)}   (rounds: ${rates[1].map(fmt).join(', ')})`);
  console.log(`  ratio batched / single: ${(m64 / m1).toFixed(2)}`);
}

const [packetsArg, roundsArg, mode] = process.argv.slice(2);
const packets = Number(packetsArg ?? 20000);
const rounds = Number(roundsArg ?? 5);
if (mode === '--child') {
  await child(packets, rounds);
} else {
  const ns = `tun-bench-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const self = fileURLToPath(import.meta.url);
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, self, String(packets), String(rounds), '--child'], {
      stdio: 'inherit',
      timeout: 120_000,
    });
    process.exitCode = r.status ?? 1;
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}
