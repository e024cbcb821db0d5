import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { internetChecksum } from '../src/icmp.js';
import { clampMss } from '../src/mss-clamp.js';
import { ipv4Packet, ipv6Packet } from './pipeline-helpers.js';

/** A TCP header (flags, options) with a correct checksum over the pseudo-header. */
function tcpSegment(flags: number, options: number[]): Buffer {
  const optLen = (options.length + 3) & ~3;
  const t = Buffer.alloc(20 + optLen + 10);
  t.writeUInt16BE(40000, 0);
  t.writeUInt16BE(5201, 2);
  t.writeUInt32BE(12345, 4);
  t[12] = ((20 + optLen) / 4) << 4;
  t[13] = flags;
  t.writeUInt16BE(64240, 14);
  Buffer.from(options).copy(t, 20);
  for (let i = 20 + optLen; i < t.length; i++) t[i] = i;
  return t;
}

function tcpChecksumOk(p: Buffer): boolean {
  const v = p[0] >>> 4;
  const t = v === 4 ? (p[0] & 0x0f) * 4 : 40;
  const len = p.length - t;
  const ph = Buffer.alloc(v === 4 ? 12 : 40);
  if (v === 4) {
    p.copy(ph, 0, 12, 20);
    ph[9] = 6;
    ph.writeUInt16BE(len, 10);
  } else {
    p.copy(ph, 0, 8, 40);
    ph.writeUInt32BE(len, 32);
    ph[39] = 6;
  }
  return internetChecksum(Buffer.concat([ph, p.subarray(t)]), 0, ph.length + len) === 0;
}

function withChecksum(p: Buffer): Buffer {
  const v = p[0] >>> 4;
  const t = v === 4 ? 20 : 40;
  p.writeUInt16BE(0, t + 16);
  const len = p.length - t;
  const ph = Buffer.alloc(v === 4 ? 12 : 40);
  if (v === 4) {
    p.copy(ph, 0, 12, 20);
    ph[9] = 6;
    ph.writeUInt16BE(len, 10);
  } else {
    p.copy(ph, 0, 8, 40);
    ph.writeUInt32BE(len, 32);
    ph[39] = 6;
  }
  p.writeUInt16BE(internetChecksum(Buffer.concat([ph, p.subarray(t)]), 0, ph.length + len), t + 16);
  return p;
}

const MSS1460 = [2, 4, 0x05, 0xb4];
const SYN = 0x02;
const SYNACK = 0x12;
const ACK = 0x10;

describe('MSS clamp', () => {
  it('lowers the MSS of an IPv4 SYN to MTU − 40 with a valid checksum', () => {
    const p = withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYN, MSS1460), 6));
    assert.equal(tcpChecksumOk(p), true);
    assert.equal(clampMss(p, 0, p.length, 1216), true);
    assert.equal(p.readUInt16BE(20 + 22), 1216 - 40);
    assert.equal(tcpChecksumOk(p), true, 'checksum fixed incrementally');
  });

  it('handles an MSS option at an odd offset (after one NOP) and SYN-ACKs', () => {
    const p = withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYNACK, [1, ...MSS1460, 1, 1, 1]), 6));
    assert.equal(clampMss(p, 0, p.length, 1336), true);
    assert.equal(p.readUInt16BE(20 + 23), 1296);
    assert.equal(tcpChecksumOk(p), true);
  });

  it('lowers the MSS of an IPv6 SYN to MTU − 60', () => {
    const p = withChecksum(ipv6Packet('fd00:1::5', 'fd00:2::5', tcpSegment(SYN, [1, 1, 4, 2, ...MSS1460]), 6));
    assert.equal(clampMss(p, 0, p.length, 1336), true);
    assert.equal(p.readUInt16BE(40 + 24 + 2), 1276);
    assert.equal(tcpChecksumOk(p), true);
  });

  it('changes nothing for non-SYNs, small MSS, other protocols, fragments or broken options', () => {
    const cases: Buffer[] = [
      withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(ACK, MSS1460), 6)),
      withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYN, [2, 4, 0x04, 0x00]), 6)),
      ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYN, MSS1460), 17),
      withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYN, [2, 40, 5, 0xb4]), 6)),
      withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYN, [0, ...MSS1460]), 6)),
    ];
    const frag = withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYN, MSS1460), 6));
    frag.writeUInt16BE(0x0004, 6);
    cases.push(frag);
    for (const c of cases) {
      const before = Buffer.from(c);
      assert.equal(clampMss(c, 0, c.length, 1216), false);
      assert.deepEqual(c, before);
    }
    const trunc = withChecksum(ipv4Packet('10.0.1.5', '10.0.2.5', tcpSegment(SYN, MSS1460), 6));
    assert.equal(clampMss(trunc, 0, 20 + 22, 1216), false, 'options cut off by the length');
  });
});
