/**
 * Path MTU through both pipelines, over the memory network with a path MTU
 * of 1280 (a router that drops larger DF datagrams silently): the search
 * finds it, then too-big packets get ICMP back, IPv4 without DF is
 * fragmented, and SYNs are clamped on send and on receive.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { internetChecksum } from '../src/icmp.js';
import { makePair, type Pair } from './pipeline-harness.js';
import { ipv4Packet, ipv6Packet, waitFor } from './pipeline-helpers.js';

const PATH = 1280;
const INNER = PATH - 28 - 36; // 1216

function syn(src: string, dst: string, mss: number): Buffer {
  const t = Buffer.alloc(24);
  t.writeUInt16BE(40000, 0);
  t.writeUInt16BE(5201, 2);
  t[12] = 6 << 4;
  t[13] = 0x02;
  t.set([2, 4, mss >>> 8, mss & 0xff], 20);
  const p = ipv4Packet(src, dst, t, 6);
  p[6] = 0x40;
  p.writeUInt16BE(0, 10);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  const ph = Buffer.alloc(12);
  p.copy(ph, 0, 12, 20);
  ph[9] = 6;
  ph.writeUInt16BE(t.length, 10);
  p.writeUInt16BE(internetChecksum(Buffer.concat([ph, p.subarray(20)]), 0, 12 + t.length), 36);
  return p;
}

function tcpChecksumOk(p: Buffer): boolean {
  const ph = Buffer.alloc(12);
  p.copy(ph, 0, 12, 20);
  ph[9] = 6;
  ph.writeUInt16BE(p.length - 20, 10);
  return internetChecksum(Buffer.concat([ph, p.subarray(20)]), 0, ph.length + p.length - 20) === 0;
}

async function learnt(p: Pair): Promise<void> {
  await waitFor(() => p.a.dp.stats().peers[0].pmtu === PATH && p.b.dp.stats().peers[0].pmtu === PATH, 30_000, 'both ends learn the path MTU');
}

function send(p: Pair, pkt: Buffer): void {
  p.a.tun.inject(pkt);
  p.a.tun.flush();
}

describe('path MTU in the pipelines (memory network, path MTU 1280)', () => {
  it('learns 1280 and reports it per peer; packets that fit pass', async () => {
    const p = await makePair({ extra: { pmtuDiscovery: true, pmtuTimers: { probeTimeoutMs: 50 } } });
    try {
      p.net!.pathMtu = PATH;
      await learnt(p);
      const st = p.a.dp.stats();
      assert.equal(st.peers[0].innerMtu, INNER);
      assert.equal(st.peers[0].pmtuPhase, 'fixed');
      assert.equal(st.pmtu.on, true);
      const fit = ipv4Packet('10.0.1.5', '10.0.2.5', INNER - 20);
      fit[6] = 0x40;
      send(p, fit);
      await waitFor(() => p.b.tun.written.some((w) => w.length === INNER), 10_000, 'a packet of exactly the inner MTU arrives');
    } finally {
      p.close();
    }
  });

  it('answers a too-big DF IPv4 packet with "fragmentation needed" (MTU 1216) and IPv6 with "packet too big"', async () => {
    const p = await makePair({ extra: { pmtuDiscovery: true, pmtuTimers: { probeTimeoutMs: 50 } } });
    try {
      p.net!.pathMtu = PATH;
      await learnt(p);
      p.a.tun.takeWritten();
      const big = ipv4Packet('10.0.1.5', '10.0.2.5', 1300);
      big[6] = 0x40;
      big.writeUInt16BE(0, 10);
      big.writeUInt16BE(internetChecksum(big, 0, 20), 10);
      send(p, big);
      const w = p.a.tun.takeWritten();
      assert.equal(w.length, 1, 'one ICMP error into the TUN');
      assert.equal(w[0][20], 3);
      assert.equal(w[0][21], 4);
      assert.equal(w[0].readUInt16BE(26), INNER);
      const big6 = ipv6Packet('fd00:1::5', 'fd00:2::5', 1300);
      send(p, big6);
      const w6 = p.a.tun.takeWritten();
      assert.equal(w6.length, 1);
      assert.equal(w6[0][40], 2);
      assert.equal(w6[0].readUInt32BE(44), INNER);
      const st = p.a.dp.stats();
      assert.equal(st.drops['too-big'], 2);
      assert.equal(st.icmp.tooBig, 2);
    } finally {
      p.close();
    }
  });

  it('fragments a too-big IPv4 packet without DF; the fragments reassemble to the original', async () => {
    const p = await makePair({ extra: { pmtuDiscovery: true, pmtuTimers: { probeTimeoutMs: 50 } } });
    try {
      p.net!.pathMtu = PATH;
      await learnt(p);
      p.b.tun.takeWritten();
      const big = ipv4Packet('10.0.1.5', '10.0.2.5', 1400 - 20);
      big.writeUInt16BE(0x1234, 4);
      send(p, big);
      await waitFor(() => p.b.tun.written.length >= 2, 10_000, 'two fragments arrive');
      const frags = p.b.tun.takeWritten();
      assert.equal(frags.length, 2);
      const body = Buffer.alloc(1380);
      for (const f of frags) {
        assert.ok(f.length <= INNER);
        assert.equal(internetChecksum(f, 0, 20), 0);
        assert.equal(f.readUInt16BE(4), 0x1234, 'same identification');
        const fo = (f.readUInt16BE(6) & 0x1fff) * 8;
        f.copy(body, fo, 20);
      }
      assert.equal(frags[0].readUInt16BE(6) & 0x2000, 0x2000, 'MF on the first');
      assert.equal(frags[1].readUInt16BE(6) & 0x2000, 0, 'not on the last');
      assert.deepEqual(body, big.subarray(20));
      assert.equal(p.a.dp.stats().pmtu.fragmented, 1);
    } finally {
      p.close();
    }
  });

  it('clamps the MSS of SYNs on send, and on receive when only the receiver clamps', async () => {
    const p = await makePair({ extra: { pmtuDiscovery: true, clampMss: true, pmtuTimers: { probeTimeoutMs: 50 } }, extraB: { clampMss: false } });
    try {
      p.net!.pathMtu = PATH;
      await learnt(p);
      p.b.tun.takeWritten();
      send(p, syn('10.0.1.5', '10.0.2.5', 1460));
      await waitFor(() => p.b.tun.written.length >= 1, 10_000, 'the SYN arrives');
      const got = p.b.tun.takeWritten()[0];
      assert.equal(got.readUInt16BE(42), INNER - 40, 'clamped by the sender');
      assert.equal(tcpChecksumOk(got), true);
      assert.equal(p.b.dp.stats().pmtu.clampMss, false);
    } finally {
      p.close();
    }
    const q = await makePair({ extra: { pmtuDiscovery: true, pmtuTimers: { probeTimeoutMs: 50 } }, extraB: { clampMss: true } });
    try {
      q.net!.pathMtu = PATH;
      await learnt(q);
      q.b.tun.takeWritten();
      send(q, syn('10.0.1.5', '10.0.2.5', 1460));
      await waitFor(() => q.b.tun.written.length >= 1, 10_000, 'the SYN arrives');
      const got = q.b.tun.takeWritten()[0];
      assert.equal(got.readUInt16BE(42), INNER - 40, 'clamped by the receiver');
      assert.equal(tcpChecksumOk(got), true);
      assert.equal(q.a.dp.stats().pmtu.clampMss, false);
    } finally {
      q.close();
    }
  });
});
