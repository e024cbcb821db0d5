import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameDecoder, encodeFrame, parseMessage } from '../src/index.js';

test('frames split across chunks and coalesced in one chunk', () => {
  const a = encodeFrame({ v: 1, type: 'x', id: 1, body: { s: 'é'.repeat(10) } }, 1000);
  const b = encodeFrame({ v: 1, type: 'y', id: 2, body: null }, 1000);
  const all = Buffer.concat([a, b]);
  const d = new FrameDecoder(1000);
  const got: Buffer[] = [];
  for (let i = 0; i < all.length; i += 3) got.push(...d.push(all.subarray(i, i + 3)));
  assert.equal(got.length, 2);
  assert.deepEqual(parseMessage(got[0]!), { v: 1, type: 'x', id: 1, body: { s: 'é'.repeat(10) } });
  assert.equal(new FrameDecoder(1000).push(all).length, 2);
  assert.equal(d.pendingBytes, 0);
});

test('an oversized header is refused before its body arrives', () => {
  const d = new FrameDecoder(100);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(101, 0);
  assert.throws(() => d.push(head), { code: 'ERR_CHANNEL_FRAME_TOO_LARGE' });
  assert.throws(() => encodeFrame({ v: 1, type: 'x', id: 1, body: 'a'.repeat(200) }, 100), { code: 'ERR_CHANNEL_FRAME_TOO_LARGE' });
});

test('malformed messages', () => {
  for (const s of ['nope', '[]', '{"v":1}', '{"v":1,"type":"x"}', '{"v":1,"type":"x","id":-1}', '{"v":1,"type":"error","id":1}']) {
    assert.throws(() => parseMessage(Buffer.from(s)), { code: 'ERR_CHANNEL_PROTOCOL' }, s);
  }
});
