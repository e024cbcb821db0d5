/** Summary of one `ping` run (iputils output). */
export interface PingResult {
  transmitted: number;
  received: number;
  /** Packet loss in percent, 0..100, as computed from the counts. */
  lossPercent: number;
  /** Round-trip times of the replies, in ms, in arrival order. */
  rttsMs: number[];
  /** Average RTT in ms, or null when nothing came back. */
  avgMs: number | null;
  /** `icmp_seq` of each reply, in arrival order (duplicates included). */
  repliedSeqs: number[];
}

/**
 * Whether each of the first `count` echo requests got a reply (at any time
 * before ping exited): loss measured by sequence number, so a reply that
 * is merely slow (a busy machine) is not counted as lost.
 */
export function everyRequestAnswered(r: PingResult, count: number): boolean {
  const got = new Set(r.repliedSeqs);
  for (let s = 1; s <= count; s++) if (!got.has(s)) return false;
  return true;
}

/** `icmp_seq` of each echo reply in ping output, also of a ping still running. */
export function repliedSeqs(stdout: string): number[] {
  return [...stdout.matchAll(/bytes from .*icmp_seq=(\d+)/g)].map((m) => Number(m[1]));
}

/**
 * Parses iputils `ping` output (with or without -q). Throws a plain Error
 * when the statistics line is missing (ping did not run to the end).
 */
export function parsePing(stdout: string): PingResult {
  const stat = stdout.match(/(\d+) packets transmitted, (\d+) (?:packets )?received/);
  if (!stat) throw new Error(`no ping statistics in output: ${stdout.slice(-500)}`);
  const transmitted = Number(stat[1]);
  const received = Number(stat[2]);
  const rttsMs = [...stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  const summary = stdout.match(/= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/);
  const avgMs = summary ? Number(summary[2]) : null;
  return {
    transmitted,
    received,
    lossPercent: transmitted === 0 ? 100 : (100 * (transmitted - received)) / transmitted,
    rttsMs,
    avgMs,
    repliedSeqs: repliedSeqs(stdout),
  };
}
