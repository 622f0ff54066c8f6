/** The `portcullis` command line: one Commander program, a module per command group. */
import { Command } from 'commander';
import { loadConfig } from '../config/index.js';
import { createEngine } from '../engine/index.js';
import { serve } from './serve.js';
import { sessionsCommand, tokenCommand } from './tokens.js';
import { usersCommand } from './users.js';
import { simulatorCommand } from './simulator.js';
import { keysCommand, masterKeyCommand, usageCommand } from './keys.js';
import { print } from './output.js';
import { cliIo } from './io.js';

export function buildProgram(): Command {
  const program = new Command('portcullis')
    .description('A self-hosted gateway between people and Claude')
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('serve', { isDefault: true })
    .description('run the gateway (the default command)')
    .action(serve);

  program
    .command('migrate')
    .description('bring the database schema up to date and exit')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const config = loadConfig(cliIo().env);
      const engine = await createEngine(config, { migrate: false });
      try {
        const { migrateToLatest } = await import('../db/index.js');
        const applied = await migrateToLatest(engine.database, config.database);
        print({ applied }, opts, () => (applied.length ? `applied ${applied.join(', ')}` : 'database is up to date'));
      } finally {
        await engine.close();
      }
    });

  program.addCommand(usersCommand());
  program.addCommand(simulatorCommand());
  program.addCommand(tokenCommand());
  program.addCommand(sessionsCommand());
  program.addCommand(keysCommand());
  program.addCommand(masterKeyCommand());
  program.addCommand(usageCommand());
  return program;
}
