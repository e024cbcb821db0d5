/**
 * The control protocol's lines: requests and answers round-trip, the version
 * is checked both ways, and every malformed line is a ControlProtocolError
 * with a stable code (never a SyntaxError or TypeError), carrying the
 * request's id when the line had one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CONTROL_COMMANDS,
  CONTROL_MAX_LINE,
  CONTROL_PROTOCOL_VERSION,
  ControlProtocolError,
  decodeAnswer,
  decodeRequest,
  encodeAnswer,
  encodeRequest,
  errorAnswer,
  resultAnswer,
  type ControlProtocolErrorCode,
  type ControlRequestId,
} from '../src/index.js';

/** The code and id of the ControlProtocolError `fn` throws (fails the test if it throws anything else or nothing). */
function refusal(fn: () => unknown): { code: ControlProtocolErrorCode; id: ControlRequestId } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ControlProtocolError, `a ControlProtocolError, not ${String(err)}`);
    assert.equal(err.name, 'ControlProtocolError');
    return { code: err.code, id: err.id };
  }
  assert.fail('did not throw');
}

/** A line without its newline, as a reader hands it to the decoders. */
const strip = (line: string): string => {
  assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), 'one line, newline-terminated');
  return line.slice(0, -1);
};

test('version 1: the constants both ends build on', () => {
  assert.equal(CONTROL_PROTOCOL_VERSION, 1);
  assert.equal(CONTROL_MAX_LINE, 65_536);
  assert.deepEqual([...CONTROL_COMMANDS], ['status', 'peers', 'bnl-status', 'set-log-level', 'reload-and-push']);
});

test('requests round-trip for every command; arguments cannot override v, id or cmd', () => {
  for (const cmd of CONTROL_COMMANDS) {
    const line = encodeRequest(cmd, { level: 7 }, 42);
    assert.deepEqual(JSON.parse(line), { level: 7, v: 1, id: 42, cmd });
    assert.deepEqual(decodeRequest(strip(line)), { id: 42, cmd, args: { level: 7 } });
  }
  const sneaky = encodeRequest('status', { v: 9, id: 'x', cmd: 'reload-and-push' }, 'req-1');
  assert.deepEqual(decodeRequest(strip(sneaky)), { id: 'req-1', cmd: 'status', args: {} });
  // the id defaults to 1; an id that is neither number nor string is read as null
  assert.equal(decodeRequest(strip(encodeRequest('peers'))).id, 1);
  assert.equal(decodeRequest('{"v":1,"cmd":"peers","id":{"a":1}}').id, null);
  assert.equal(decodeRequest('{"v":1,"cmd":"peers"}').id, null);
});

test('answers round-trip: results and errors', () => {
  const ok = resultAnswer(7, { serial: 3 });
  assert.deepEqual(ok, { v: 1, id: 7, ok: true, result: { serial: 3 } });
  assert.deepEqual(decodeAnswer(strip(encodeAnswer(ok))), ok);
  const bad = errorAnswer('p', 'ERR_BNL_INVALID', 'bad signature');
  assert.deepEqual(decodeAnswer(strip(encodeAnswer(bad))), { v: 1, id: 'p', ok: false, error: { code: 'ERR_BNL_INVALID', message: 'bad signature' } });
  // a result may be anything JSON, null included
  assert.deepEqual(decodeAnswer('{"v":1,"id":1,"ok":true,"result":null}'), { v: 1, id: 1, ok: true, result: null });
});

test('version checks: a request or an answer of another version is ERR_CONTROL_VERSION, with the id echoed', () => {
  for (const v of ['2', '0', '"1"', 'null', '1.5']) {
    assert.deepEqual(refusal(() => decodeRequest(`{"v":${v},"id":7,"cmd":"status"}`)), { code: 'ERR_CONTROL_VERSION', id: 7 }, `request v=${v}`);
    assert.deepEqual(refusal(() => decodeAnswer(`{"v":${v},"id":7,"ok":true,"result":{}}`)), { code: 'ERR_CONTROL_VERSION', id: 7 }, `answer v=${v}`);
  }
  assert.deepEqual(refusal(() => decodeRequest('{"id":"a","cmd":"status"}')), { code: 'ERR_CONTROL_VERSION', id: 'a' }, 'no v at all');
  // the version is checked before the command: a v2 daemon's new command is a version problem
  assert.equal(refusal(() => decodeRequest('{"v":2,"id":1,"cmd":"teleport"}')).code, 'ERR_CONTROL_VERSION');
});

test('malformed requests: typed errors, never a SyntaxError or TypeError', () => {
  const cases: Array<[string, ControlProtocolErrorCode, ControlRequestId]> = [
    ['', 'ERR_CONTROL_PROTOCOL', null],
    ['not json', 'ERR_CONTROL_PROTOCOL', null],
    ['{"v":1,"id":3,"cmd":"status"', 'ERR_CONTROL_PROTOCOL', null],
    ['null', 'ERR_CONTROL_PROTOCOL', null],
    ['[1,2]', 'ERR_CONTROL_PROTOCOL', null],
    ['"status"', 'ERR_CONTROL_PROTOCOL', null],
    ['42', 'ERR_CONTROL_PROTOCOL', null],
    ['{"v":1,"id":3}', 'ERR_CONTROL_UNKNOWN_COMMAND', 3],
    ['{"v":1,"id":3,"cmd":"launch-missiles"}', 'ERR_CONTROL_UNKNOWN_COMMAND', 3],
    ['{"v":1,"id":3,"cmd":7}', 'ERR_CONTROL_UNKNOWN_COMMAND', 3],
    ['{"v":1,"id":3,"cmd":["status"]}', 'ERR_CONTROL_UNKNOWN_COMMAND', 3],
    ['{"v":1,"id":3,"cmd":"toString"}', 'ERR_CONTROL_UNKNOWN_COMMAND', 3],
    ['{"v":1,"id":3,"cmd":"__proto__"}', 'ERR_CONTROL_UNKNOWN_COMMAND', 3],
  ];
  for (const [line, code, id] of cases) assert.deepEqual(refusal(() => decodeRequest(line)), { code, id }, JSON.stringify(line));
  // over CONTROL_MAX_LINE bytes (counted in bytes, not characters), even when valid JSON
  const long = `{"v":1,"id":1,"cmd":"status","pad":"${'x'.repeat(CONTROL_MAX_LINE)}"}`;
  assert.equal(refusal(() => decodeRequest(long)).code, 'ERR_CONTROL_PROTOCOL');
  const justFits = `{"v":1,"id":1,"cmd":"status","pad":"${'x'.repeat(CONTROL_MAX_LINE - 40)}"}`;
  assert.equal(decodeRequest(justFits).cmd, 'status');
  const multibyte = `{"v":1,"id":1,"cmd":"status","pad":"${'é'.repeat(CONTROL_MAX_LINE / 2)}"}`;
  assert.ok(multibyte.length < CONTROL_MAX_LINE * 1.01 && Buffer.byteLength(multibyte) > CONTROL_MAX_LINE);
  assert.equal(refusal(() => decodeRequest(multibyte)).code, 'ERR_CONTROL_PROTOCOL');
  // the cause of a JSON failure is kept
  try {
    decodeRequest('{');
    assert.fail('did not throw');
  } catch (err) {
    assert.ok((err as Error).cause instanceof SyntaxError);
  }
});

test('malformed answers: typed errors', () => {
  const cases: Array<[string, ControlProtocolErrorCode]> = [
    ['', 'ERR_CONTROL_PROTOCOL'],
    ['<html>', 'ERR_CONTROL_PROTOCOL'],
    ['[]', 'ERR_CONTROL_PROTOCOL'],
    ['{"v":1,"id":1}', 'ERR_CONTROL_PROTOCOL'],
    ['{"v":1,"id":1,"ok":"yes","result":1}', 'ERR_CONTROL_PROTOCOL'],
    ['{"v":1,"id":1,"ok":false}', 'ERR_CONTROL_PROTOCOL'],
    ['{"v":1,"id":1,"ok":false,"error":null}', 'ERR_CONTROL_PROTOCOL'],
    ['{"v":1,"id":1,"ok":false,"error":"boom"}', 'ERR_CONTROL_PROTOCOL'],
    ['{"v":1,"id":1,"ok":false,"error":{"code":5,"message":"x"}}', 'ERR_CONTROL_PROTOCOL'],
    ['{"v":1,"id":1,"ok":false,"error":{"code":"ERR_X"}}', 'ERR_CONTROL_PROTOCOL'],
  ];
  for (const [line, code] of cases) assert.equal(refusal(() => decodeAnswer(line)).code, code, JSON.stringify(line));
});

test('random lines never escape as anything but a ControlProtocolError or a valid request', () => {
  // mutations of valid lines: truncation, byte flips, duplicated spans (seeded, so a failure repeats)
  let seed = 0x9e3779b9;
  const rnd = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const bases = CONTROL_COMMANDS.map((c) => strip(encodeRequest(c, c === 'set-log-level' ? { level: 6 } : {}, rnd(1000))));
  let decoded = 0;
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.from(bases[rnd(bases.length)]!);
    let m: Buffer;
    switch (rnd(3)) {
      case 0:
        m = b.subarray(0, rnd(b.length));
        break;
      case 1:
        m = Buffer.from(b);
        for (let k = 0; k <= rnd(3); k++) m[rnd(m.length)] = rnd(256);
        break;
      default: {
        const at = rnd(b.length);
        m = Buffer.concat([b.subarray(0, at), b.subarray(rnd(b.length)), b.subarray(at)]);
      }
    }
    try {
      const r = decodeRequest(m.toString('utf8'));
      assert.ok((CONTROL_COMMANDS as readonly string[]).includes(r.cmd));
      decoded++;
    } catch (err) {
      assert.ok(err instanceof ControlProtocolError, `${m.toString('utf8')}: ${String(err)}`);
      refused++;
    }
  }
  assert.equal(decoded + refused, 5000);
  assert.ok(refused > 2000, `${refused} refused`);
});
