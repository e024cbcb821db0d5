/**
 * `bnl … | head` must not end in a stack trace: when the reader of stdout
 * goes away (EPIPE), the command stops quietly with the exit code it had, as
 * Unix tools do. Any other stdout error is reported on one line (exit 1).
 */
export function quietOnClosedStdout(tool: string): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    process.stderr.write(`${tool}: cannot write to stdout: ${err.message}\n`);
    process.exit(1);
  });
}
