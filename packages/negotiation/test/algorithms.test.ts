import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { AlgoConfigError, chooseAlgorithms, deriveSessionKeys, parseCompAlgos, parseCryptAlgos, type AlgoChoice } from '../src/index.js';

describe('algorithm lists', () => {
  test('parse', () => {
    assert.deepEqual(parseCryptAlgos(' aes256gcm:256:20   chacha20poly1305:256:10 '), [
      { algo: 'aes256gcm', param: 256, pref: 20 },
      { algo: 'chacha20poly1305', param: 256, pref: 10 },
    ]);
    assert.deepEqual(parseCompAlgos('none:0:5 lz4:1:2'), [
      { algo: 'none', param: 0, pref: 5 },
      { algo: 'lz4', param: 1, pref: 2 },
    ]);
  });

  const bad: Array<[string, 'crypt' | 'comp', string]> = [
    ['aescbc:128:20', 'crypt', 'aescbc:128:20'],
    ['aes256gcm:256:1 blowfish:128:3', 'crypt', 'blowfish:128:3'],
    ['aes256gcm:128:1', 'crypt', 'aes256gcm:128:1'],
    ['aes256gcm:256', 'crypt', 'aes256gcm:256'],
    ['aes256gcm:256:1 aes256gcm:256:2', 'crypt', 'aes256gcm:256:2'],
    ['aes256gcm:256:70000', 'crypt', 'aes256gcm:256:70000'],
    ['', 'crypt', ''],
    ['zlib:6:2', 'comp', 'zlib:6:2'],
    ['none:1:2', 'comp', 'none:1:2'],
    ['lz4:13:2', 'comp', 'lz4:13:2'],
  ];
  for (const [list, kind, item] of bad) {
    test(`rejects ${JSON.stringify(list)} naming ${JSON.stringify(item)}`, () => {
      assert.throws(
        () => (kind === 'crypt' ? parseCryptAlgos(list) : parseCompAlgos(list)),
        (err: unknown) => err instanceof AlgoConfigError && err.code === 'ERR_ALGO_CONFIG' && err.item === item,
      );
    });
  }
});

describe('choice table', () => {
  const rows: Array<{ a: [string, string]; b: [string, string]; want: AlgoChoice | 'ERR_NO_COMMON_ALGO' }> = [
    // highest summed preference wins
    { a: ['aes256gcm:256:20 chacha20poly1305:256:10', 'none:0:5 lz4:1:2'], b: ['aes256gcm:256:1 chacha20poly1305:256:30', 'none:0:1 lz4:3:9'], want: { cipher: 'chacha20poly1305', compression: { algo: 'lz4', level: 3 } } },
    // only the common one can win, whatever its preference
    { a: ['aes256gcm:256:0 chacha20poly1305:256:99', 'none:0:0'], b: ['aes256gcm:256:0', 'none:0:0 lz4:1:99'], want: { cipher: 'aes256gcm', compression: { algo: 'none', level: 0 } } },
    // tie on the sum: fixed order (aes256gcm before chacha20poly1305; lz4 before none)
    { a: ['aes256gcm:256:10 chacha20poly1305:256:20', 'none:0:10 lz4:2:20'], b: ['aes256gcm:256:20 chacha20poly1305:256:10', 'none:0:20 lz4:5:10'], want: { cipher: 'aes256gcm', compression: { algo: 'lz4', level: 5 } } },
    // level = the larger of the two
    { a: ['chacha20poly1305:256:1', 'lz4:9:1'], b: ['chacha20poly1305:256:1', 'lz4:0:1'], want: { cipher: 'chacha20poly1305', compression: { algo: 'lz4', level: 9 } } },
    { a: ['aes256gcm:256:1', 'none:0:1'], b: ['chacha20poly1305:256:1', 'none:0:1'], want: 'ERR_NO_COMMON_ALGO' },
    { a: ['aes256gcm:256:1', 'none:0:1'], b: ['aes256gcm:256:1', 'lz4:1:1'], want: 'ERR_NO_COMMON_ALGO' },
  ];
  rows.forEach((r, i) => {
    test(`row ${i}: same result from both sides`, () => {
      const a = { crypt: parseCryptAlgos(r.a[0]), comp: parseCompAlgos(r.a[1]) };
      const b = { crypt: parseCryptAlgos(r.b[0]), comp: parseCompAlgos(r.b[1]) };
      if (r.want === 'ERR_NO_COMMON_ALGO') {
        assert.throws(() => chooseAlgorithms(a, b), { code: 'ERR_NO_COMMON_ALGO' });
        assert.throws(() => chooseAlgorithms(b, a), { code: 'ERR_NO_COMMON_ALGO' });
      } else {
        assert.deepEqual(chooseAlgorithms(a, b), r.want);
        assert.deepEqual(chooseAlgorithms(b, a), r.want);
      }
    });
  });
});

describe('key derivation', () => {
  const choice: AlgoChoice = { cipher: 'aes256gcm', compression: { algo: 'lz4', level: 1 } };
  const exporter = randomBytes(32);
  const ra = randomBytes(32);
  const rb = randomBytes(32);
  const alpha = () => deriveSessionKeys({ exporter, localName: 'alpha', peerName: 'bravo', localRandom: ra, peerRandom: rb, localIndex: 11, remoteIndex: 22, choice });
  const bravo = () => deriveSessionKeys({ exporter, localName: 'bravo', peerName: 'alpha', localRandom: rb, peerRandom: ra, localIndex: 22, remoteIndex: 11, choice });

  test('both ends agree, one key per direction', () => {
    const a = alpha();
    const b = bravo();
    assert.deepEqual(a.txKey, b.rxKey);
    assert.deepEqual(a.rxKey, b.txKey);
    assert.notDeepEqual(a.txKey, a.rxKey);
    assert.equal(a.txKey.length, 32);
  });

  test('every input is bound: exporter (replay on another connection), randoms, names, algorithms, indexes', () => {
    const base = alpha().txKey;
    const variants = [
      deriveSessionKeys({ exporter: randomBytes(32), localName: 'alpha', peerName: 'bravo', localRandom: ra, peerRandom: rb, localIndex: 11, remoteIndex: 22, choice }),
      deriveSessionKeys({ exporter, localName: 'alpha', peerName: 'bravo', localRandom: randomBytes(32), peerRandom: rb, localIndex: 11, remoteIndex: 22, choice }),
      deriveSessionKeys({ exporter, localName: 'alpha', peerName: 'bravo', localRandom: ra, peerRandom: randomBytes(32), localIndex: 11, remoteIndex: 22, choice }),
      deriveSessionKeys({ exporter, localName: 'alpha', peerName: 'carol', localRandom: ra, peerRandom: rb, localIndex: 11, remoteIndex: 22, choice }),
      deriveSessionKeys({ exporter, localName: 'alpha', peerName: 'bravo', localRandom: ra, peerRandom: rb, localIndex: 11, remoteIndex: 22, choice: { ...choice, cipher: 'chacha20poly1305' } }),
      deriveSessionKeys({ exporter, localName: 'alpha', peerName: 'bravo', localRandom: ra, peerRandom: rb, localIndex: 11, remoteIndex: 22, choice: { ...choice, compression: { algo: 'lz4', level: 2 } } }),
      deriveSessionKeys({ exporter, localName: 'alpha', peerName: 'bravo', localRandom: ra, peerRandom: rb, localIndex: 12, remoteIndex: 22, choice }),
    ];
    for (const v of variants) assert.notDeepEqual(v.txKey, base);
  });

  test('a node cannot derive keys with itself', () => {
    assert.throws(() => deriveSessionKeys({ exporter, localName: 'a', peerName: 'a', localRandom: ra, peerRandom: rb, localIndex: 1, remoteIndex: 2, choice }), { code: 'ERR_NEGOTIATION_PROTOCOL' });
  });
});
