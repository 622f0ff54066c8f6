#!/usr/bin/env node
/**
 * CLI entry. Parses arguments and runs a command; any failure is one line on stderr and
 * a non-zero exit, never a stack trace (set PORTCULLIS_DEBUG=1 to see one).
 */
import { CommanderError } from 'commander';
import { buildProgram } from './cli/program.js';
import { ConfigError } from './config/index.js';
import { isGatewayError } from './errors/index.js';

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (or the help text).
      process.exit(err.exitCode);
    }
    if (process.env.PORTCULLIS_DEBUG) console.error(err);
    const message =
      err instanceof ConfigError ? `configuration: ${err.message}`
      : isGatewayError(err) ? err.message
      : `${(err as Error)?.message ?? String(err)}`;
    process.stderr.write(`error: ${message}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  }
}

void main(process.argv);
