// Chevrotain's own single-file ESM bundle: its package entry loads lodash-es's hundreds of modules (about 350 ms
// at every start of the CLI here), the bundle the same API in about 15 ms. The entry is resolved first, so the bundle
// is found wherever npm put the package; types come from the package as usual.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

type Chevrotain = typeof import('chevrotain');

const entry = createRequire(import.meta.url).resolve('chevrotain');
const bundle = path.join(path.dirname(entry), '..', 'chevrotain.mjs');
const chevrotain = (await import(pathToFileURL(bundle).href)) as Chevrotain;

export const { createToken, createTokenInstance, CstParser, EOF, Lexer } = chevrotain;
