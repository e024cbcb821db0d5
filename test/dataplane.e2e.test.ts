/**
 * End to end: three data-plane nodes (test/fixtures/dataplane-node) in
 * network namespaces with real TUN devices and static test keys.
 *
 * - every directed pair pings over IPv4 and IPv6 inner addresses;
 * - a 1400-byte IP packet with DF set passes (IPv4 and IPv6);
 * - datagrams captured on the underlay (tcpdump in the receiver's
 *   namespace) are replayed and tampered from the sender's namespace and
 *   show up as 'replayed' / 'auth-failed' in the receiver's stats;
 * - nothing is left behind: namespaces, processes (devices die with them).
 *
 * Needs root, `ip netns`, /dev/net/tun, ping and tcpdump; skips otherwise.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { udpDatagramsFromPcap } from './lib/cluevpn.js';
import { createLab, everyRequestAnswered, listNamespaces, requireLab, type Lab, type LabHost } from './lib/lab.js';
import type { TrackedProcess } from './lib/process.js';

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURE = join(here, 'fixtures', 'dataplane-node.js');
const PORT = 3406;
const MTU = 1420;

const inner4 = (i: number): string => `10.77.0.${i}`;
const inner6 = (i: number): string => `fd00:77::${i}`;

/** Session parameters for the pair (i, j), both directions. */
function pairKeys(i: number, j: number): { ij: Record<string, unknown>; ji: Record<string, unknown> } {
  const kij = randomBytes(32).toString('hex');
  const kji = randomBytes(32).toString('hex');
  const idx = (a: number, b: number): number => a * 1000 + b; // unique per node
  const cipher = (i + j) % 2 === 0 ? 'chacha20-poly1305' : 'aes-256-gcm';
  const compression = { algo: i === 1 ? 'lz4' : 'none', level: 0 };
  return {
    ij: { localIndex: idx(i, j), remoteIndex: idx(j, i), cipher, txKey: kij, rxKey: kji, txEpoch: 1, rxEpochFloor: 0, compression },
    ji: { localIndex: idx(j, i), remoteIndex: idx(i, j), cipher, txKey: kji, rxKey: kij, txEpoch: 1, rxEpochFloor: 0, compression },
  };
}

/** UDP payloads of IPv4 datagrams from `src` to port `dport` in a pcap file. */
function udpPayloadsFromPcap(file: string, src: string, dport: number): Buffer[] {
  return udpDatagramsFromPcap(file).filter((d) => d.src === src && d.dport === dport).map((d) => d.payload);
}

async function statsOf(p: TrackedProcess, seq: number): Promise<{ drops: Record<string, number>; peers: Array<{ id: string; drops: Record<string, number>; rxPackets: number; txPackets: number }> }> {
  process.kill(p.pid, 'SIGUSR2');
  const m = await p.waitForOutput(new RegExp(`STATS ${seq} (.*)\\n`), { timeoutMs: 30_000, stream: 'stdout' });
  return JSON.parse(m[1]);
}

test('three data-plane nodes in namespaces: pings, 1400-byte DF, replay and tamper on the underlay, clean teardown', { timeout: 120_000 }, async (t) => {
  if (!requireLab(t, { tools: { tcpdump: 'tcpdump' } })) return;
  const prefix = `dp${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'dp-e2e-'));
  let lab: Lab | null = null;
  const procs: TrackedProcess[] = [];
  try {
    lab = await createLab({ prefix, hosts: 3 });
    const hosts = lab.hosts;
    // underlay: pairs with node 3 use IPv6, the pair (1, 2) IPv4
    const underlay = (i: number, j: number): string => (i === 3 || j === 3 ? hosts[j - 1].ipv6 : hosts[j - 1].ipv4);
    const peers: Record<number, unknown[]> = { 1: [], 2: [], 3: [] };
    for (const [i, j] of [[1, 2], [1, 3], [2, 3]] as const) {
      const k = pairKeys(i, j);
      peers[i].push({ id: `n${j}`, subnets: [`${inner4(j)}/32`, `${inner6(j)}/128`], endpoint: { host: underlay(i, j), port: PORT }, session: k.ij });
      peers[j].push({ id: `n${i}`, subnets: [`${inner4(i)}/32`, `${inner6(i)}/128`], endpoint: { host: underlay(j, i), port: PORT }, session: k.ji });
    }
    for (const h of hosts) {
      const i = h.index;
      const cfg = {
        tun: 'dp0',
        mtu: MTU,
        port: PORT,
        addresses: [`${inner4(i)}/24`, `${inner6(i)}/64`],
        localSubnets: [`${inner4(i)}/32`, `${inner6(i)}/128`],
        peers: peers[i],
      };
      const file = join(dir, `n${i}.json`);
      writeFileSync(file, JSON.stringify(cfg), { mode: 0o600 });
      const p = lab.spawn(h, process.execPath, [FIXTURE, file], { label: `dataplane-node n${i}` });
      procs.push(p);
    }
    for (const p of procs) {
      const m = await p.waitForOutput(/(READY|ERROR) ([^\n]*)/, { timeoutMs: 15_000, stream: 'stdout' });
      assert.equal(m[1], 'READY', `${p.label}: ${m[2]} ${p.stderr()}`);
    }

    // every directed pair, IPv4 and IPv6
    for (const a of hosts) {
      for (const b of hosts) {
        if (a === b) continue;
        for (const target of [inner4(b.index), inner6(b.index)]) {
          const r = await lab.ping(a, target, { count: 3, intervalS: 0.2 });
          assert.ok(r.received >= 2, `${a.name} → ${target}: ${r.received}/${r.transmitted}`);
        }
      }
    }

    // 1400-byte IP packets with DF: 1372 + 8 + 20 (IPv4), 1352 + 8 + 40 (IPv6)
    const big4 = await lab.exec(hosts[0], 'ping', ['-c', '2', '-W', '2', '-M', 'do', '-s', '1372', inner4(2)], { check: false });
    assert.equal(big4.code, 0, `1400-byte IPv4 ping: ${big4.stdout}${big4.stderr}`);
    const big6 = await lab.exec(hosts[0], 'ping', ['-6', '-c', '2', '-W', '2', '-M', 'do', '-s', '1352', inner6(3)], { check: false });
    assert.equal(big6.code, 0, `1400-byte IPv6 ping: ${big6.stdout}${big6.stderr}`);

    // capture h1 → h2 datagrams on h2's underlay
    const pcap = join(dir, 'h2.pcap');
    const dump = lab.spawn(hosts[1], 'tcpdump', ['-i', 'any', '--immediate-mode', '-U', '-n', '-Z', 'root', '-w', pcap, 'udp', 'and', 'dst', 'port', String(PORT), 'and', 'src', 'host', hosts[0].ipv4], {
      label: 'tcpdump h2',
    });
    procs.push(dump);
    await dump.waitForOutput(/listening on/, { timeoutMs: 10_000, stream: 'stderr' });
    const r = await lab.ping(hosts[0], inner4(2), { count: 5, intervalS: 0.1, deadlineS: 30 });
    assert.ok(everyRequestAnswered(r, 5), `replies ${r.repliedSeqs.join(',')}`);
    await new Promise((res) => setTimeout(res, 300));
    await dump.stop('SIGINT');
    const captured = udpPayloadsFromPcap(pcap, hosts[0].ipv4, PORT);
    assert.ok(captured.length >= 5, `captured ${captured.length} datagrams; tcpdump: ${dump.stderr()}`);
    const before = await statsOf(procs[1], 1);
    const n1Before = before.peers.find((p) => p.id === 'n1')!;

    // replay them verbatim and send tampered copies, from h1's namespace
    // Tampered copies carry an unseen counter (a copy of a seen counter is
    // refused by the replay check before any crypto) and one flipped
    // ciphertext byte: only the AEAD can catch them.
    const tampered = captured.map((d, i) => {
      const c = Buffer.from(d);
      c.writeUInt32BE(c.readUInt32BE(16) + 1_000_000 + i, 16);
      c[c.length - 20] ^= 0x40;
      return c;
    });
    const sender = `
      const dgram = require('node:dgram');
      const list = require('node:fs').readFileSync(0, 'utf8').trim().split('\\n').map((h) => Buffer.from(h, 'hex'));
      const s = dgram.createSocket('udp4');
      let left = list.length;
      for (const d of list) s.send(d, ${PORT}, '${hosts[1].ipv4}', () => { if (--left === 0) s.close(); });
    `;
    const input = [...captured, ...tampered].map((d) => d.toString('hex')).join('\n');
    await lab.exec(hosts[0], process.execPath, ['-e', sender], { input, timeoutMs: 10_000 });
    await new Promise((res) => setTimeout(res, 500));
    const after = await statsOf(procs[1], 2);
    const n1After = after.peers.find((p) => p.id === 'n1')!;
    const d = (s: { drops: Record<string, number> }, k: string): number => s.drops[k] ?? 0;
    assert.equal(d(n1After, 'replayed') - d(n1Before, 'replayed'), captured.length, 'every replay counted as replayed');
    assert.equal(d(n1After, 'auth-failed') - d(n1Before, 'auth-failed'), tampered.length, 'every tampered copy counted as auth-failed');
    assert.equal(n1After.rxPackets, n1Before.rxPackets, 'nothing replayed or tampered reached the TUN');
    // and the tunnel still works
    assert.ok((await lab.ping(hosts[0], inner4(2), { count: 2 })).received >= 1);

    // clean shutdown of every node
    for (const p of procs) {
      if (!p.running()) continue;
      const res = await p.stop('SIGTERM', 3000);
      if (p !== dump) assert.equal(res.code, 0, `${p.label} exit: ${p.stderr()}`);
    }
  } finally {
    for (const p of procs) if (p.running()) await p.stop('SIGKILL', 1000);
    if (lab !== null) await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(listNamespaces(prefix), [], 'no namespace left behind');
  for (const p of procs) assert.equal(p.running(), false, `${p.label} still running`);
});

export type { LabHost };
