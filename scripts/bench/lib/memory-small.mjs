// Memory of a small daemon (scripts/bench/memory-small; see --help there).
import { spawnSync } from 'node:child_process';
import { openSync, readFileSync, readSync, closeSync } from 'node:fs';
import { basename } from 'node:path';
import { parseOptions, usageHelpers } from './lab.mjs';
import { buildStamp, changedSince, control, createHarness, fmt, max, nowMs, printTable, rssKiB, sleep, tail, verdict } from './mesh-harness.mjs';

const opts = { nodes: 3, idle: 30, flood: 2000, hold: 0 };
const { usageError } = usageHelpers('memory-small');
const count = (s, name) => {
  if (!/^[0-9]+$/.test(s)) usageError(`${name} needs a number, not '${s}' (--nodes N, --idle-seconds S, --flood N, --hold-seconds S)`);
  return Number(s);
};
parseOptions('memory-small', process.argv.slice(2), (a, value) => {
  if (a === '--nodes') opts.nodes = count(value(), a);
  else if (a === '--idle-seconds') opts.idle = count(value(), a);
  else if (a === '--flood') opts.flood = count(value(), a);
  else if (a === '--hold-seconds') opts.hold = count(value(), a);
  else return false;
  return true;
});
if (opts.nodes < 2 || opts.nodes > 20) usageError('--nodes must be 2..20');
const TARGET_MIB = 48;
const MiB = (kib) => kib / 1024;
const h = createHarness('memory-small', 'bmsm');
const stamp = buildStamp();
const problems = [];

/**
 * Resident kB of one pid by kind of mapping (/proc/PID/smaps): the node
 * binary split by permissions (r-x code, r-- read-only data, rw- data),
 * every other file by name, [heap] (malloc), [stack], other anonymous.
 */
export function smapsBreakdown(pid) {
  const r = { nodeCode: 0, nodeRo: 0, nodeRw: 0, files: {}, mallocHeap: 0, stack: 0, anon: 0, anonMaps: 0, rss: 0, pss: 0, anonTotal: 0 };
  let cur = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = line.match(/^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \d+\s*(.*)$/);
    if (head) {
      cur = { perms: head[1], name: head[2].trim() };
      continue;
    }
    const m = line.match(/^(Rss|Pss|Anonymous):\s+(\d+) kB/);
    if (!m || !cur) continue;
    const kb = Number(m[2]);
    if (m[1] === 'Pss') {
      r.pss += kb;
      continue;
    }
    if (m[1] === 'Anonymous') {
      r.anonTotal += kb;
      continue;
    }
    r.rss += kb;
    const { perms, name } = cur;
    if (name === '[heap]') r.mallocHeap += kb;
    else if (name === '[stack]') r.stack += kb;
    else if (name.startsWith('/') && /\/node$/.test(name)) {
      if (perms.includes('x')) r.nodeCode += kb;
      else if (perms.includes('w')) r.nodeRw += kb;
      else r.nodeRo += kb;
    } else if (name.startsWith('/')) r.files[basename(name)] = (r.files[basename(name)] ?? 0) + kb;
    else if (name === '' || name.startsWith('[anon')) {
      r.anon += kb;
      if (kb > 0) r.anonMaps++;
    } else r.files[name] = (r.files[name] ?? 0) + kb; // [vvar], [vdso], …
  }
  return r;
}
/** The node binary's sections that hold code or data at run time: [{ name, start, end }] (virtual addresses; `readelf -SW`). */
function nodeSections(file) {
  const r = spawnSync('readelf', ['-SW', file], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  const out = [];
  for (const line of r.stdout.split('\n')) {
    const m = line.match(/^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)/);
    if (m && Number.parseInt(m[2], 16) > 0) out.push({ name: m[1], start: Number.parseInt(m[2], 16), end: Number.parseInt(m[2], 16) + Number.parseInt(m[3], 16) });
  }
  return out;
}
/**
 * Resident KiB of the node binary per ELF section (/proc/PID/pagemap,
 * present bit; needs root): where its 40 MiB of file-backed pages are.
 * Assumes a non-PIE binary (addresses as linked), as Node's release builds are.
 */
function nodePagesBySection(pid) {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').map((l) => l.split(/\s+/)).filter((f) => f.length >= 6 && /\/node$/.test(f[5]));
  if (maps.length === 0) return {};
  const secs = nodeSections(maps[0][5]);
  const res = {};
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    for (const f of maps) {
      const [lo, hi] = f[0].split('-').map((x) => Number.parseInt(x, 16));
      const n = (hi - lo) / 4096;
      const buf = Buffer.alloc(n * 8);
      readSync(fd, buf, 0, buf.length, (lo / 4096) * 8);
      for (let i = 0; i < n; i++) {
        if ((buf.readUInt32LE(i * 8 + 4) & 0x80000000) === 0) continue;
        const va = lo + i * 4096;
        const sec = secs.find((x) => va + 4096 > x.start && va < x.end)?.name ?? '(between sections)';
        const key = sec === '.dynstr' || sec === '.dynsym' || sec === '.gnu.hash' || sec === '.gnu.version' ? 'dynamic symbols (.dynstr .dynsym .gnu.hash .gnu.version)' : sec;
        res[key] = (res[key] ?? 0) + 4;
      }
    }
  } finally {
    closeSync(fd);
  }
  return res;
}
const threads = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Threads:\s+(\d+)/m)?.[1]);

async function main() {
  const N = opts.nodes;
  h.log(`lab bmsm (${N} hosts), network n1..n${N}`);
  await h.labUp(N);
  const net = await h.makeNetwork(Array.from({ length: N }, (_, k) => ({ name: `n${k + 1}`, addr: `192.0.2.${k + 1}` })));
  const t0 = nowMs();
  const ds = net.nodes.map((n, k) => h.startDaemon(k + 1, n));
  const ready = await Promise.all(ds.map((d) => h.waitReady(d, 30_000)));
  ds.forEach((d, k) => {
    if (!Number.isFinite(ready[k])) problems.push(`${d.node.name} did not start:\n${tail(d.node.log, 10)}\n${d.child.out.slice(-800)}`);
  });
  if (problems.length) throw new Error('daemons did not start');
  const startMs = ready.map((r) => r - t0);
  // every directed pair: negotiation and a first reply
  for (let i = 1; i <= N; i++) {
    for (let j = 1; j <= N; j++) {
      if (i === j) continue;
      const r = await h.inHost(i, 'ping', ['-n', '-c', '1', '-w', '10', '-i', '0.2', `10.99.0.${j}`], { timeoutMs: 15_000 });
      if (r.code !== 0) problems.push(`no reply n${i} → n${j}`);
    }
  }
  // the data plane under a burst
  let flood = '';
  if (opts.flood > 0) {
    const r = await h.inHost(1, 'ping', ['-n', '-q', '-f', '-s', '1400', '-c', String(opts.flood), '-w', '60', '10.99.0.2'], { timeoutMs: 70_000 });
    flood = r.stdout.trim().split('\n').filter((l) => /packets|rtt/.test(l)).join('; ');
    if (r.code !== 0) problems.push(`flood ping n1 → n2 failed: ${flood}`);
  }
  h.log(`started in ${startMs.map((x) => fmt(x)).join('/')} ms; pairs pinged; flood: ${flood || 'skipped'}; idle ${opts.idle} s`);
  const samples = [];
  const end = nowMs() + opts.idle * 1000;
  for (;;) {
    samples.push(ds.map((d) => rssKiB(d.pid)));
    if (nowMs() >= end) break;
    await sleep(Math.min(5000, Math.max(0, end - nowMs())));
  }
  // the floor: a bare Node process on the same machine, at the same moment
  const bare = h.spawnInHost(1, process.execPath, ['-e', 'setTimeout(() => {}, 1e6)']);
  await sleep(1500);
  const pids = [...ds.map((d) => d.pid), bare.pid];
  const sm = pids.map((pid) => smapsBreakdown(pid));
  const mem = [];
  for (const d of ds) mem.push(await control(d.node.sock, 'status').then((st) => st.memory, () => null));
  const th = pids.map((pid) => threads(pid));
  const sections = pids.map((pid) => nodePagesBySection(pid));
  const bareRss = rssKiB(bare.pid);
  bare.kill('SIGKILL');

  const rebuilt = changedSince(stamp);
  if (rebuilt.length) problems.push(`dist of ${rebuilt.join(', ')} was rebuilt during the run: the figures may mix builds`);
  const out = process.stdout;
  const la = readFileSync('/proc/loadavg', 'utf8').trim();
  out.write(`\nmemory-small: ${N} cluevpnd in bmsm-h1..h${N}, ${N}-node list, all pairs pinged, flood ${opts.flood} × 1400 B n1 → n2, idle ${opts.idle} s\n${stamp.text}\nload average at the end: ${la}\n${process.env.NODE_OPTIONS ? `NODE_OPTIONS=${process.env.NODE_OPTIONS}\n` : ''}${process.env.UV_THREADPOOL_SIZE ? `UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE}\n` : ''}\n`);
  const cols = [...ds.map((d) => d.node.name), 'bare node'];
  const row = (label, f, target = '', ok) => [label, ...sm.map((s, k) => f(s, k)), target, target ? verdict(ok) : ''];
  const rssLast = [...samples.at(-1).map(MiB), MiB(bareRss)];
  const rssMax = [...ds.map((_, k) => max(samples.map((s) => MiB(s[k])))), NaN];
  const MB = (kb) => fmt(MiB(kb), 1);
  const files = {};
  for (const s of sm) for (const [f, kb] of Object.entries(s.files)) files[f] = (files[f] ?? 0) + kb;
  const topFiles = Object.entries(files).sort((a, b) => b[1] - a[1]).slice(0, 6).map(([f]) => f);
  const otherFiles = (s) => Object.entries(s.files).filter(([f]) => !topFiles.includes(f)).reduce((a, [, kb]) => a + kb, 0);
  const mb = (b) => fmt(b / 1048576, 1);
  const secTotals = {};
  for (const x of sections) for (const [n, kb] of Object.entries(x)) secTotals[n] = (secTotals[n] ?? 0) + kb;
  const secNames = Object.entries(secTotals).filter(([, kb]) => kb / sections.length >= 100).sort((a, b) => b[1] - a[1]).map(([n]) => n);
  const rows = [
    ['figure', ...cols, 'target', 'verdict'],
    row('start (spawn → control socket), ms', (_, k) => fmt(startMs[k] ?? NaN)),
    row(`RSS at idle, last sample (${opts.idle} s), MiB`, (_, k) => fmt(rssLast[k], 1), `≤ ${TARGET_MIB}`, Math.max(...rssLast.slice(0, N)) <= TARGET_MIB),
    row('RSS at idle, max of the samples (every 5 s), MiB', (_, k) => fmt(rssMax[k], 1)),
    row('where: smaps Rss (at the end), MiB', (s) => MB(s.rss)),
    row('  node binary: code (r-x), MiB', (s) => MB(s.nodeCode)),
    row('  node binary: read-only data (r--), MiB', (s) => MB(s.nodeRo)),
    row('  node binary: data (rw-), MiB', (s) => MB(s.nodeRw)),
    ...secNames.map((n) => row(`    node binary section ${n}, MiB`, (_, k) => MB(sections[k][n] ?? 0))),
    ...topFiles.map((f) => row(`  file ${f}, MiB`, (s) => MB(s.files[f] ?? 0))),
    row('  other files, MiB', (s) => MB(otherFiles(s))),
    row('  malloc [heap], MiB', (s) => MB(s.mallocHeap)),
    row('  main [stack], MiB', (s) => MB(s.stack)),
    row('  other anonymous (V8 spaces, thread stacks, arenas), MiB', (s) => MB(s.anon)),
    row('    mappings with resident pages', (s) => String(s.anonMaps)),
    row('anonymous in all (smaps Anonymous), MiB', (s) => MB(s.anonTotal)),
    row('PSS (shared code split between the daemons), MiB', (s) => MB(s.pss)),
    row('threads', (_, k) => String(th[k])),
    row('V8 heap used / total, MiB', (_, k) => (mem[k] ? `${mb(mem[k].heapUsed)}/${mb(mem[k].heapTotal)}` : '?')),
    row('external / arrayBuffers, MiB', (_, k) => (mem[k] ? `${mb(mem[k].external)}/${mb(mem[k].arrayBuffers)}` : '?')),
  ];
  printTable(rows);
  out.write(`\nRSS samples, MiB: ${samples.map((s) => s.map((x) => fmt(MiB(x), 1)).join('/')).join(' ')}\n`);
  if (problems.length) out.write(`\nproblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n\nn1 log (tail):\n${tail(net.nodes[0].log, 15)}\n`);
  if (opts.hold > 0) {
    h.log(`holding the lab ${opts.hold} s: pids ${ds.map((d) => d.pid).join(' ')}`);
    await sleep(opts.hold * 1000);
  }
}

main().then(
  () => process.exit(problems.length ? 1 : 0),
  (err) => {
    process.stderr.write(`memory-small: ${err.stack ?? err}\n${problems.join('\n')}\n`);
    process.exit(1);
  },
);
