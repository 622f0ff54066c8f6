#!/usr/bin/env node
/** CLI entry: runs the command line against the real process. */
import { runCli } from './cli/run.js';
import { cliIo } from './cli/io.js';
import { tuneV8 } from './runtime.js';

tuneV8();
const code = await runCli(process.argv.slice(2), cliIo());
// `serve` keeps running after it returns; every other command has closed its handles.
if (code !== 0) process.exit(code);
