/**
 * Entry point of the `bnl` admin command (see `bnl/commands.ts`).
 */
import { runBnl } from './bnl/commands.js';
import { quietOnClosedStdout } from './stdout.js';

quietOnClosedStdout('bnl');
process.exitCode = await runBnl(process.argv.slice(2));
