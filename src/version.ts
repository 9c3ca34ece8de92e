/** The package version, read once from package.json so outputs can record what wrote them. */
import fs from 'node:fs';
import { packageFile } from './packageRoot.js';

export const VERSION: string = (JSON.parse(fs.readFileSync(packageFile('package.json'), 'utf8')) as { version: string }).version;
