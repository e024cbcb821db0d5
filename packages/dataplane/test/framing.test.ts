import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DropReason } from '../src/drop-reasons.js';
import {
  COUNTER_MAX,
  Flags,
  RELAY_ID_LEN,
  relayMaxPayload,
  HEADER_LEN,
  MessageType,
  OVERHEAD,
  checkHeader,
  decodeHeader,
  encodeHeader,
  readCounter,
  readEpoch,
  readReceiverIndex,
} from '../src/framing.js';

function frame(type: 1 | 2 | 3 | 4 | 5, flags: number, idx: number, epoch: number, counter: number, payload: number): Buffer {
  const b = Buffer.alloc(HEADER_LEN + payload + 16);
  encodeHeader(b, 0, type, flags, idx, epoch, counter);
  return b;
}

describe('framing', () => {
  it('round-trips every field, including counters near 2^53', () => {
    const cases: Array<[number, number, number]> = [
      [0, 0, 0],
      [1, 1, 1],
      [0xffffffff, 0xffffffff, 2 ** 32 - 1],
      [0x12345678, 7, 2 ** 32],
      [42, 9, 2 ** 48 + 12345],
      [7, 3, COUNTER_MAX],
    ];
    for (const [idx, epoch, counter] of cases) {
      const b = Buffer.alloc(64);
      encodeHeader(b, 10, MessageType.DATA, Flags.COMPRESSED, idx, epoch, counter);
      const h = decodeHeader(b, 10);
      assert.deepEqual(h, { version: 1, type: 1, flags: 1, receiverIndex: idx, epoch, counter: BigInt(counter) });
      assert.equal(readReceiverIndex(b, 10), idx);
      assert.equal(readEpoch(b, 10), epoch);
      assert.equal(readCounter(b, 10), counter);
      assert.equal(b.readBigUInt64BE(22), BigInt(counter));
    }
  });

  it('lays the header out as documented (big endian, version in the high nibble)', () => {
    const b = Buffer.alloc(20);
    encodeHeader(b, 0, MessageType.KEEPALIVE, 0, 0x01020304, 0x05060708, 0x090a0b0c0d0e);
    assert.equal(b.toString('hex'), '12000000' + '01020304' + '05060708' + '0000090a0b0c0d0e');
  });

  it('accepts well-formed headers and names the reason for each malformed one', () => {
    const ok = frame(1, 0, 1, 1, 5, 100);
    assert.equal(checkHeader(ok, 0, ok.length, 1420), DropReason.NONE);
    assert.equal(checkHeader(frame(3, 0, 1, 1, 5, 40), 0, OVERHEAD + 40, 1420), DropReason.NONE, 'rendezvous');
    assert.equal(checkHeader(frame(2, 0, 1, 1, 5, 0), 0, OVERHEAD, 1420), DropReason.NONE);
    const table: Array<[string, (b: Buffer) => void, number, number]> = [
      ['short', () => {}, 19, DropReason.TRUNCATED],
      ['no tag', () => {}, 30, DropReason.TRUNCATED],
      ['version 2', (b) => (b[0] = 0x21), -1, DropReason.BAD_VERSION],
      ['version 0', (b) => (b[0] = 0x01), -1, DropReason.BAD_VERSION],
      ['type 0', (b) => (b[0] = 0x10), -1, DropReason.BAD_TYPE],
      ['type 15', (b) => (b[0] = 0x1f), -1, DropReason.BAD_TYPE],
      ['type 3 (rendezvous) with flags', (b) => { b[0] = 0x13; b[1] = 1; }, -1, DropReason.BAD_FLAGS],
      ['type 10 in a router-mode pipeline', (b) => (b[0] = 0x1a), -1, DropReason.BAD_TYPE],
      ['unknown flag', (b) => (b[1] = 0x02), -1, DropReason.BAD_FLAGS],
      ['reserved', (b) => (b[3] = 1), -1, DropReason.BAD_FLAGS],
      ['counter ≥ 2^53', (b) => b.writeUInt32BE(0x200000, 12), -1, DropReason.BAD_COUNTER],
    ];
    for (const [name, mutate, len, reason] of table) {
      const b = frame(1, 0, 1, 1, 5, 100);
      mutate(b);
      assert.equal(checkHeader(b, 0, len < 0 ? b.length : len, 1420), reason, name);
    }
    const big = frame(1, 0, 1, 1, 5, 1421);
    assert.equal(checkHeader(big, 0, big.length, 1420), DropReason.OVERSIZE);
    const emptyData = frame(1, 0, 1, 1, 5, 0);
    assert.equal(checkHeader(emptyData, 0, emptyData.length, 1420), DropReason.TRUNCATED);
    const kaPayload = frame(2, 0, 1, 1, 5, 3);
    assert.equal(checkHeader(kaPayload, 0, kaPayload.length, 1420), DropReason.MALFORMED);
    const kaFlag = frame(2, Flags.COMPRESSED, 1, 1, 5, 0);
    assert.equal(checkHeader(kaFlag, 0, kaFlag.length, 1420), DropReason.BAD_FLAGS);
  });

  it('relay messages (types 4, 5): an id and at least an empty inner datagram, at most a full one, no flags', () => {
    for (const type of [4, 5] as const) {
      const smallest = frame(type, 0, 1, 1, 5, RELAY_ID_LEN + OVERHEAD);
      assert.equal(checkHeader(smallest, 0, smallest.length, 1420), DropReason.NONE, `type ${type}: id + keepalive`);
      const largest = frame(type, 0, 1, 1, 5, relayMaxPayload(1420));
      assert.equal(relayMaxPayload(1420), RELAY_ID_LEN + OVERHEAD + 1420);
      assert.equal(checkHeader(largest, 0, largest.length, 1420), DropReason.NONE, `type ${type}: id + full data`);
      const over = frame(type, 0, 1, 1, 5, relayMaxPayload(1420) + 1);
      assert.equal(checkHeader(over, 0, over.length, 1420), DropReason.OVERSIZE);
      const short = frame(type, 0, 1, 1, 5, RELAY_ID_LEN + OVERHEAD - 1);
      assert.equal(checkHeader(short, 0, short.length, 1420), DropReason.TRUNCATED);
      const flagged = frame(type, Flags.COMPRESSED, 1, 1, 5, RELAY_ID_LEN + OVERHEAD);
      assert.equal(checkHeader(flagged, 0, flagged.length, 1420), DropReason.BAD_FLAGS);
    }
    // a small MTU still carries a relayed rendezvous message (512 bytes)
    assert.equal(relayMaxPayload(576), RELAY_ID_LEN + OVERHEAD + 576);
  });

  it('decodeHeader refuses fewer than 20 bytes', () => {
    assert.throws(() => decodeHeader(Buffer.alloc(19)), RangeError);
  });
});
