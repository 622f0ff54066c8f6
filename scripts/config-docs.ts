import { renderConfigurationDoc } from '../src/config/docs.js';

process.stdout.write(renderConfigurationDoc());
