/** Renders docs/configuration.md from the settings table, so the two never disagree. */
import type { SettingDefinition } from './schema.js';
import { settings } from './schema.js';

export function renderConfigurationDoc(): string {
  const rows = Object.values(settings).map((s: SettingDefinition<unknown>) => {
    const def = s.default === undefined ? '(unset)' : s.default === '' ? '(empty)' : `\`${s.default}\``;
    const doc = `${s.doc} Expected: ${s.parser.expected}.${s.secret ? ' Secret: never printed.' : ''}`;
    return `| \`${s.env}\` | ${def} | ${doc.replaceAll('|', '\\|')} |`;
  });
  return [
    '# Configuration',
    '',
    'Portcullis reads its settings once at start, from environment variables and, optionally, a JSON',
    'file named by `PORTCULLIS_CONFIG` whose keys are the same variable names (the environment wins).',
    'A wrong value stops the process with one line naming the variable, the problem and the expected',
    'form; secret values are never echoed.',
    '',
    'This page is generated from `src/config/schema.ts` by `npm run docs:config`; a test fails when',
    'they disagree.',
    '',
    '| variable | default | meaning |',
    '|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
