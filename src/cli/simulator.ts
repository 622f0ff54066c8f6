/** `portcullis simulator`: run the Anthropic API simulator until SIGINT/SIGTERM. */
import { Command, InvalidArgumentError } from 'commander';
import { buildSimulator } from '../simulator/index.js';

function integer(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return Number(value);
  };
}

function collectKeys(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface SimulatorCliOptions {
  port: number;
  host: string;
  key: string[];
  deltas?: number;
  delay?: number;
  log?: boolean;
}

export function simulatorCommand(): Command {
  return new Command('simulator')
    .description('run a local stand-in for the Anthropic API (tests, benchmarks, demos)')
    .option('--port <n>', 'port to listen on (0: any free port)', integer(0, 65535), 8787)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--key <key>', 'accept only this API key (repeatable; any key when omitted)', collectKeys, [])
    .option('--deltas <n>', 'text deltas per streamed reply', integer(1, 10_000))
    .option('--delay <ms>', 'milliseconds before each streamed delta', integer(0, 600_000))
    .option('--log', 'log every request (off by default: it is a benchmark baseline)')
    .action(async (opts: SimulatorCliOptions) => {
      const sim = await buildSimulator({
        keys: opts.key.length > 0 ? opts.key : undefined,
        deltas: opts.deltas,
        deltaDelayMs: opts.delay,
        logger: opts.log ?? false,
      });
      const url = await sim.listen({ port: opts.port, host: opts.host });
      process.stdout.write(`Anthropic API simulator listening on ${url} (${opts.key.length > 0 ? `${opts.key.length} key(s)` : 'any key'})\n`);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write(`${signal}: stopping simulator\n`);
        sim.close().then(
          () => process.exit(0),
          (err: unknown) => {
            console.error(err);
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}
