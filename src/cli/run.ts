/**
 * Runs the `portcullis` command line with the given arguments and returns its exit code.
 * Any failure is one line on stderr, never a stack trace (PORTCULLIS_DEBUG=1 shows one).
 */
import { CommanderError } from 'commander';
import type { Command } from 'commander';
import { ConfigError } from '../config/index.js';
import { isGatewayError } from '../errors/index.js';
import type { CliIo } from './io.js';
import { withCliIo } from './io.js';
import { buildProgram } from './program.js';

export async function runCli(args: string[], io: CliIo): Promise<number> {
  const program = buildProgram();
  const configure = (command: Command) => {
    command.exitOverride();
    command.configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
    command.commands.forEach(configure);
  };
  configure(program);
  try {
    await withCliIo(io, () => program.parseAsync(args, { from: 'user' }));
    return 0;
  } catch (err) {
    // Commander has printed its own message (or the help text) already.
    if (err instanceof CommanderError) return err.exitCode;
    if (io.env.PORTCULLIS_DEBUG) io.stderr(`${(err as Error)?.stack ?? String(err)}\n`);
    const message =
      err instanceof ConfigError ? `configuration: ${err.message}`
      : isGatewayError(err) ? err.message
      : ((err as Error)?.message ?? String(err));
    io.stderr(`error: ${message}\n`);
    return err instanceof ConfigError ? 2 : 1;
  }
}
