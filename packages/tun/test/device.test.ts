/**
 * Real TUN devices, each test in its own network namespace (tun-<pid>-<n>),
 * exercised by fixtures/child.js running under `ip netns exec`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inNetns, linksIn, runChild, skipReason, withNetns } from '../fixtures/netns.js';

const skip = skipReason() ?? false;

test('open, configure (MTU, up, IPv4/IPv6 addresses and routes) and close leave no fd and no device', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'fd-leak');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.after, res.before, 'fd count after 5 open/close cycles');
    assert.deepEqual(res.left, []);
    assert.equal(res.observed.length, 5);
    res.observed.forEach((o: any, i: number) => {
      assert.equal(o.name, `tunfd${i}`);
      assert.equal(o.mtu, 1400);
      assert.equal(o.sysMtu, 1400);
      assert.equal(o.up, true);
      assert.ok(o.addrs.includes(`10.77.${i}.1/255.255.255.0`), JSON.stringify(o.addrs));
      assert.ok(o.addrs.includes(`fd77:${i + 1}::1/ffff:ffff:ffff:ffff::`), JSON.stringify(o.addrs));
      assert.equal(o.route4, true);
      assert.equal(o.route6, true);
    });
    assert.deepEqual(await linksIn(ns, 'tunfd'), []);
  });
});

test('addRoutes adds 600 routes in one netlink exchange; a failing one is named and the others still applied; removeRoute; kernel errors', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'add-routes');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.manyFailed, 0);
    const [ok4, exists, ok6, bad, ok6b, notCidr, last] = res.second;
    assert.equal(ok4, null);
    assert.equal(exists.code, 'ERR_TUN_CONFIG');
    assert.equal(exists.errno, 'EEXIST');
    assert.match(exists.message, /^route add 10\.80\.5\.0\/24 dev tunrt0: .*exists \(EEXIST\)$/);
    assert.equal(ok6, null);
    assert.equal(bad.code, 'ERR_TUN_CONFIG');
    assert.match(bad.message, /prefix length/);
    assert.equal(ok6b, null);
    assert.equal(notCidr.code, 'ERR_TUN_CONFIG');
    assert.equal(last, null, 'commands after a failure still run');
    assert.equal(res.routes4, 600 + 2);
    assert.equal(res.routes6, 2);
    assert.equal(res.empty, 0);
    assert.equal(res.closed, 'ERR_TUN_CLOSED');
    // removeRoute: gone from the kernel's table; a second removal is ESRCH.
    assert.equal(res.removed, null);
    assert.equal(res.removed6, null);
    assert.equal(res.removedAgain.errno, 'ESRCH');
    assert.equal(res.removedAgain.code, 'ERR_TUN_CONFIG');
    assert.equal(res.after4, res.routes4 - 1);
    assert.equal(res.after6, res.routes6 - 1);
    // The kernel's own refusals come back per request with their errno.
    assert.equal(res.hostBits.errno, 'EINVAL', JSON.stringify(res.hostBits));
    assert.equal(res.addr6, null);
    assert.equal(res.addrAgain.errno, 'EEXIST');
    // IFA_F_NODAD: the IPv6 address is usable at once (flags without 0x40 tentative).
    assert.notEqual(res.v6flags, null);
    assert.equal(parseInt(res.v6flags, 16) & 0x40, 0, `flags ${res.v6flags}`);
    assert.equal(res.closedRemove, 'ERR_TUN_CLOSED');
  });
});

test('a taken name gives ERR_TUN_BUSY; kernel-chosen names; TAP mode; bad options give ERR_TUN_CONFIG', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'busy');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.deepEqual(res.again, { code: 'ERR_TUN_BUSY', errno: 'EBUSY' });
    assert.equal(res.lo.code, 'ERR_TUN_BUSY');
    assert.equal(res.tapOverTun.code, 'ERR_TUN_BUSY');
    assert.equal(res.reopenedName, 'tunbusy0');
    assert.match(res.autoName, /^tun\d+$/);
    assert.equal(res.autoOffload, true, 'offloads on by default in TUN mode');
    assert.equal(res.tapOffload, false);
    assert.equal(res.autoType, '65534'); // ARPHRD_NONE: layer 3
    assert.match(res.tapName, /^tap\d+$/);
    assert.equal(res.tapType, '1'); // ARPHRD_ETHER
    assert.equal(res.badName.code, 'ERR_TUN_CONFIG');
    assert.equal(res.longName.code, 'ERR_TUN_CONFIG');
    assert.equal(res.badMtu.code, 'ERR_TUN_CONFIG');
  });
});

test('packets the kernel routes into the device arrive in batches, intact and in order (IPv4 and IPv6)', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'read-batch', ['64']);
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.complete, true);
    assert.equal(res.got4, 200);
    assert.equal(res.got6, 50);
    assert.equal(res.ok4, true, 'IPv4 payloads in order');
    assert.equal(res.ok6, true, 'IPv6 payloads in order');
    assert.equal(res.offsetsOk, true, 'packet i at i * slotSize + headroom');
    assert.ok(res.maxBatch > 1 && res.maxBatch <= 64, `max batch ${res.maxBatch}`);
    assert.equal(res.stats.batchesIn, res.batches);
    assert.ok(res.stats.packetsIn >= 250);
  });
});

test('batchSize 1 still delivers every packet, one per call', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'read-batch', ['1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.result!.ok4, true);
    assert.equal(r.result!.ok6, true);
    assert.equal(r.result!.maxBatch, 1);
    assert.equal(r.result!.stats.batchesIn, r.result!.stats.packetsIn);
  });
});

test('written ICMP echo requests are delivered by the kernel and answered (IPv4 and IPv6)', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'write-echo');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.w4, true);
    assert.equal(res.w6, true);
    assert.equal(res.complete, true);
    const v4 = res.replies.find((x: any) => x.v === 4);
    const v6 = res.replies.find((x: any) => x.v === 6);
    assert.deepEqual(v4, { v: 4, src: '10.99.0.1', dst: '10.99.0.2', id: 0x4242, data: 'vpn-echo-payload' });
    assert.deepEqual(v6, { v: 6, src: 'fd99:0:0:0:0:0:0:1', dst: 'fd99:0:0:0:0:0:0:2', id: 0x4243, data: 'vpn-echo-payload' });
    assert.equal(res.stats.packetsOut, 2);
  });
});

test('writeBatch delivers datagrams to a socket; a non-IP packet is counted, bad bounds throw before writing', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'write-batch');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.written, 3);
    assert.equal(res.complete, true);
    assert.deepEqual(res.got, ['10.99.0.2:5555|batch-0', '10.99.0.2:5555|batch-2', '10.99.0.2:5555|batch-3']);
    assert.equal(res.stats.writeErrors, 1);
    assert.equal(res.stats.packetsOut, 3);
    assert.equal(res.rangeCode, 'ERR_OUT_OF_RANGE');
    assert.equal(res.outAfterRange, res.outBefore, 'nothing written when one entry is out of range');
    assert.equal(res.closedCode, 'ERR_TUN_CLOSED');
  });
});

test('offload: UDP read with partial checksums arrives complete and in order, checksums completed (IPv4 and IPv6)', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'read-batch', ['64', 'offload']);
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.ok4, true);
    assert.equal(res.ok6, true);
    assert.equal(res.badChecksums, 0);
    assert.ok(res.stats.offloadChecksumsIn >= 250, `completed ${res.stats.offloadChecksumsIn}`);
    assert.equal(res.stats.offloadInvalidIn, 0);
  });
});

for (const [batch, mode, headroom] of [
  ['64', 'coalesce', '64'],
  ['8', 'coalesce', '64'],
  ['64', 'no-coalesce', '0'],
] as const) {
  test(`offload: 4 MB each way over TCP through the device, super-packets split into valid segments (batchSize ${batch}, ${mode}, headroom ${headroom})`, { skip }, async () => {
    await withNetns(async (ns) => {
      const r = await inNetns(ns, 'tcp-offload', [batch, mode, String(4 * 1024 * 1024), headroom], 20_000);
      assert.equal(r.code, 0, r.stderr);
      const res = r.result!;
      assert.equal(res.offload, true);
      assert.deepEqual(res.r4, { ok: true, got: 4 * 1024 * 1024 }, 'IPv4 echo intact');
      assert.deepEqual(res.r6, { ok: true, got: 4 * 1024 * 1024 }, 'IPv6 echo intact');
      assert.equal(res.badIp, 0, 'IPv4 header checksums');
      assert.equal(res.badL4, 0, 'TCP checksums of every packet handed over');
      assert.equal(res.tooBig, 0, 'no packet above the MTU');
      assert.equal(res.maxLen, 1400);
      // Per flow, sequence numbers must be contiguous; a hole (a segment missing) is only
      // allowed when the kernel itself dropped packets on the way into the device.
      assert.ok(res.holes <= res.txDropped + res.qdiscDropped, `holes ${res.holes}, kernel drops ${res.txDropped}+${res.qdiscDropped}: ${res.gapList}`);
      assert.ok(res.gaps <= res.holes + res.retrans, `gaps ${res.gaps}: ${res.gapList}, retransmits ${res.retrans}`);
      assert.ok(res.v6Tcp > 0);
      const st = res.stats;
      assert.ok(res.superIn4 > 0, 'IPv4 super-packets read');
      assert.ok(st.offloadSuperIn > res.superIn4, 'IPv6 super-packets read');
      assert.ok(st.offloadSegmentsIn > 2 * st.offloadSuperIn, `segments ${st.offloadSegmentsIn} from ${st.offloadSuperIn}`);
      assert.equal(st.offloadInvalidIn, 0);
      assert.equal(st.readOversize, 0);
      assert.equal(st.packetsOut, st.packetsIn, 'every packet written back');
      assert.equal(st.writeErrors + st.writeDropped, 0);
      assert.equal(res.maxBatch, Number(batch));
      if (mode === 'coalesce') {
        assert.ok(st.offloadSuperOut > 0, 'segments coalesced on write');
        assert.ok(st.offloadSegmentsOut >= 2 * st.offloadSuperOut);
      } else {
        assert.equal(st.offloadSuperOut, 0);
      }
    });
  });
}

test('offload: coalesced writes are valid super-packets (the kernel forwards and segments them); a corrupt segment is not coalesced', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'gro-forward');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    for (const v of ['v4', 'v6']) {
      const x = res[v];
      assert.equal(x.written, 11, v);
      assert.equal(x.complete, true, v);
      assert.equal(x.count, 11, v);
      assert.equal(x.superOut, 2, `${v}: flow A before and after flow B`);
      assert.equal(x.segmentsOut, 10, v);
      assert.equal(x.checksumsOk, true, `${v}: checksums completed by the kernel from our pseudo-header sums`);
      assert.equal(x.payloadA, true, v);
      assert.deepEqual(x.seqA, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000], v);
      assert.deepEqual(x.pshA, [false, false, false, false, false, false, false, false, false, true], v);
      assert.deepEqual(x.flowB, ['other-flow'], v);
    }
    const c = res.corrupt;
    assert.equal(c.count, 11);
    assert.deepEqual(c.badChecksums, [3000], 'the corrupt segment stays corrupt');
    assert.equal(c.superOut, 3);
    assert.equal(c.segmentsOut, 9);
  });
});

test('offload: plain writes (zero vnet header) are delivered: ICMP echo answered, writeBatch to a socket', { skip }, async () => {
  await withNetns(async (ns) => {
    const e = await inNetns(ns, 'write-echo', ['offload']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.result!.complete, true);
    assert.equal(e.result!.replies.length, 2);
    assert.equal(e.result!.stats.packetsOut, 2);
    const w = await inNetns(ns, 'write-batch', ['offload']);
    assert.equal(w.code, 0, w.stderr);
    assert.deepEqual(w.result!.got, ['10.99.0.2:5555|batch-0', '10.99.0.2:5555|batch-2', '10.99.0.2:5555|batch-3']);
    assert.equal(w.result!.stats.writeErrors, 1);
  });
});

test('an exception in the packet handler becomes ERR_TUN_HANDLER and reading continues', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'handler-throws');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.deepEqual(res.errors, [{ code: 'ERR_TUN_HANDLER', cause: 'handler exploded' }]);
    assert.deepEqual(res.seen, ['boom', 'after', 'boom', 'final']);
    assert.equal(res.stats.handlerErrors, 3, 'two handler throws + one error-handler throw');
  });
});

test('deleting the interface under an open device reports ERR_TUN_IO and stops reading', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'read-error', [], 5000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.result!.gone, true);
    assert.equal(r.result!.errors.length, 1);
    assert.equal(r.result!.errors[0].code, 'ERR_TUN_IO');
    assert.equal(typeof r.result!.errors[0].errno, 'string');
  });
});

test('a device dropped without close() is garbage-collected and closed; a polling one is kept', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'gc');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.during, res.before + 1);
    assert.equal(res.after, res.before, 'fd closed by the finalizer');
    assert.equal(res.gone0, true);
    assert.equal(res.alive1, true, 'polling device survives gc');
    assert.equal(res.got, 1);
    assert.equal(res.gone1, true);
  });
});

test('a worker thread terminated with a reading device releases it (no crash, no fd, no interface)', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'worker');
    assert.equal(r.code, 0, r.stderr);
    const res = r.result!;
    assert.equal(res.name, 'tunwk0');
    assert.equal(res.existed, true);
    assert.ok(res.during > res.before);
    assert.equal(res.after, res.before);
    assert.equal(res.gone, true);
  });
});

test('the process exits by itself after close()', { skip }, async () => {
  await withNetns(async (ns) => {
    // a process the device keeps alive is killed at the deadline (a signal,
    // no exit code); the deadline is generous for a busy machine
    const r = await inNetns(ns, 'exit-after-close', [], 20_000);
    assert.equal(r.code, 0, r.stderr);
    const lag = r.exitedAt - r.result!.closedAt;
    assert.ok(lag < 15_000, `exited ${lag} ms after close`);
    assert.deepEqual(await linksIn(ns, 'tunex'), []);
  });
});

test('a polling device keeps the process alive; unref() lets it exit', { skip }, async () => {
  await withNetns(async (ns) => {
    const held = await inNetns(ns, 'keep-alive', ['ref'], 3000);
    assert.equal(held.signal, 'SIGKILL', 'still running after 3 s, killed by the test');
    assert.equal(held.result!.mode, 'ref');
    const freed = await inNetns(ns, 'keep-alive', ['unref'], 20_000);
    assert.equal(freed.code, 0, freed.stderr);
    assert.ok(freed.exitedAt - freed.result!.startedAt < 15_000);
    assert.deepEqual(await linksIn(ns, 'tunka'), []);
  });
});

test('a non-root process gets ERR_TUN_PERMISSION', { skip }, async () => {
  await withNetns(async (ns) => {
    const r = await inNetns(ns, 'nonroot');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.result!.uid, 65534);
    assert.equal(r.result!.named.code, 'ERR_TUN_PERMISSION');
    assert.equal(r.result!.auto.code, 'ERR_TUN_PERMISSION');
  });
});

test('no /dev/net/tun gives ERR_TUN_UNAVAILABLE', { skip }, async () => {
  // Private mount namespace with a tmpfs over /dev/net: the host is not affected.
  const r = await runChild(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tun-hide /dev/net && exec "$@"', 'sh'], 'unavailable');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.result!.exists, false);
  assert.deepEqual(r.result!.r, { code: 'ERR_TUN_UNAVAILABLE', errno: 'ENOENT' });
});
