// Workspace settings of the executor (where stages run: this machine or Slurm), read from pausepipe.json or package.json.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import type { Diagnostic, SourceSpan } from '../grammar/diagnostics.ts';
import { didYouMean } from '../grammar/suggest.ts';
import { jsonSpans } from './json-spans.ts';

/** What a stage's Slurm job asks for beyond its kind's resources; the workspace sets defaults, per kind and per stage. */
export interface SlurmJobSettings {
  partition?: string;
  account?: string;
  qos?: string;
  /** `--time`, in Slurm's forms (`90`, `4:00:00`, `2-00:00:00`). */
  time?: string;
  /** `--mem` per node, e.g. `16G`. */
  mem?: string;
  /** `--cpus-per-task` instead of the kind's CPU count. */
  cpus?: number;
  /** GPUs (`--gres=gpu:N`) instead of the kind's count; 0 runs a GPU kind on CPUs. */
  gpus?: number;
  /** Further `sbatch` flags, e.g. `["--constraint=a100"]`. */
  sbatch?: string[];
}

export type ExecutorType = 'local' | 'slurm';

export interface ExecutorSettings extends SlurmJobSettings {
  /** Where `run` sends stale stages when no --executor flag is given. */
  type: ExecutorType;
  /** Overrides by stage kind, e.g. `sft`. */
  kinds: Record<string, SlurmJobSettings>;
  /** Overrides by stage: a declared name (all its variants) or one generated name; the generated name wins. */
  stages: Record<string, SlurmJobSettings>;
  /** Seconds between two looks at the queue (squeue) and at the jobs' logs. */
  pollSeconds: number;
}

export interface LoadedSettings {
  executor: ExecutorSettings;
  /** The file the settings came from; absent when the workspace has none (the defaults apply). */
  file?: string;
  diagnostics: Diagnostic[];
  /** Text of the settings file, for code frames. */
  sources: Record<string, string>;
}

export const DEFAULT_EXECUTOR: ExecutorSettings = { type: 'local', kinds: {}, stages: {}, pollSeconds: 2 };

/** Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]. */
const SLURM_TIME = '^(\\d+(:\\d{1,2}){0,2}|\\d+-\\d+(:\\d{1,2}){0,2}|UNLIMITED|INFINITE)$';
const SLURM_MEMORY = '^\\d+[KMGT]?$';

const JOB_PROPERTIES = {
  partition: { type: 'string', minLength: 1 },
  account: { type: 'string', minLength: 1 },
  qos: { type: 'string', minLength: 1 },
  time: { type: 'string', pattern: SLURM_TIME, description: 'a Slurm time limit: minutes, h:mm:ss or days-h:mm:ss' },
  mem: { type: 'string', pattern: SLURM_MEMORY, description: 'a Slurm memory size: a number with an optional K, M, G or T' },
  cpus: { type: 'integer', minimum: 1 },
  gpus: { type: 'integer', minimum: 0 },
  sbatch: { type: 'array', items: { type: 'string', pattern: '^-', description: 'an sbatch flag starting with `-`' } },
} as const;

const JOB_SCHEMA = { type: 'object', properties: JOB_PROPERTIES, additionalProperties: false };

const SETTINGS_SCHEMA = {
  type: 'object',
  properties: {
    executor: {
      type: 'object',
      properties: {
        type: { enum: ['local', 'slurm'] },
        ...JOB_PROPERTIES,
        kinds: { type: 'object', additionalProperties: JOB_SCHEMA },
        stages: { type: 'object', additionalProperties: JOB_SCHEMA },
        pollSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
};

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validate = ajv.compile(SETTINGS_SCHEMA);

/** The settings file and the JSON pointer of the settings object inside it. */
const SOURCES = [
  { name: 'pausepipe.json', root: '' },
  { name: 'package.json', root: '/pausepipe' },
] as const;

function settingsError(message: string, span: SourceSpan | undefined, notes: string[] = []): Diagnostic {
  return { code: 'E_SETTINGS', severity: 'error', message, ...(span ? { span } : {}), ...(notes.length ? { notes } : {}) };
}

function spanAt(text: string, file: string, offset: number): SourceSpan {
  const before = text.slice(0, offset).split('\n');
  const line = before.length;
  const column = before.at(-1)!.length + 1;
  return { file, line, column, endLine: line, endColumn: column + 1, offset, endOffset: offset + 1 };
}

function atPointer(value: unknown, pointer: string): unknown {
  let at = value;
  for (const seg of pointer.split('/').slice(1)) {
    if (at === null || typeof at !== 'object') return undefined;
    at = (at as Record<string, unknown>)[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return at;
}

/** `executor.kinds.sft.time` for a pointer under the settings object. */
function displayName(pointer: string): string {
  return pointer.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s, i) => (i === 0 ? s : /^\d+$/.test(s) ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`)).join('');
}

function errorDiagnostic(e: ErrorObject, root: string, spans: ReturnType<typeof jsonSpans>): Diagnostic {
  const pointer = `${root}${e.instancePath}`;
  const where = spans.value.get(pointer);
  const name = displayName(e.instancePath);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(e.params.additionalProperty);
      const known = Object.keys((e.parentSchema?.properties as Record<string, unknown> | undefined) ?? {});
      const notes = didYouMean(key, known);
      if (notes.length === 0) notes.push(`known: ${known.join(', ')}`);
      return settingsError(`unknown setting \`${key}\`${name ? ` in \`${name}\`` : ''}`, spans.key.get(`${pointer}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`) ?? where, notes);
    }
    case 'enum':
      return settingsError(`\`${name}\` must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(e.data)}`, where);
    case 'pattern': {
      const description = (e.parentSchema as { description?: string } | undefined)?.description;
      return settingsError(`\`${name}\` must be ${description ?? `like ${String(e.params.pattern)}`}, got ${JSON.stringify(e.data)}`, where);
    }
    case 'type':
      return settingsError(`\`${name || '(settings)'}\` must be ${String(e.params.type)}, got ${JSON.stringify(e.data)}`, where);
    default:
      return settingsError(`\`${name || '(settings)'}\` ${e.message ?? 'is invalid'}, got ${JSON.stringify(e.data)}`, where);
  }
}

/**
 * The executor settings of a workspace: `pausepipe.json` ({"executor": {...}}) when it exists, else the "pausepipe"
 * object of package.json, else the defaults. Mistakes are diagnostics with the file's line and column, never throws;
 * with `knownKinds`, a kind under `executor.kinds` that is not among them is one.
 */
export function loadSettings(workspace: string, knownKinds?: string[]): LoadedSettings {
  for (const { name, root } of SOURCES) {
    const file = path.join(workspace, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const sources = { [file]: text };
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch (error) {
      // Node's message names the offset ("... in JSON at position 42"): point there.
      const at = /position (\d+)/.exec((error as Error).message);
      const offset = at ? Math.min(Number(at[1]), text.length) : undefined;
      const span = offset === undefined ? undefined : spanAt(text, file, offset);
      return { executor: DEFAULT_EXECUTOR, file, sources, diagnostics: [settingsError(`${name} is not valid JSON: ${(error as Error).message}`, span)] };
    }
    const settings = atPointer(document, root);
    if (settings === undefined) continue;
    if (!validate(settings)) {
      const spans = jsonSpans(text, file);
      return { executor: DEFAULT_EXECUTOR, file, sources, diagnostics: (validate.errors ?? []).map((e) => errorDiagnostic(e, root, spans)) };
    }
    const executor = (settings as { executor?: Partial<ExecutorSettings> }).executor ?? {};
    // Stage names may belong to another pipeline of the workspace; a kind the registry lacks is a typo.
    const unknownKinds = knownKinds === undefined ? [] : Object.keys(executor.kinds ?? {}).filter((k) => !knownKinds.includes(k));
    if (knownKinds !== undefined && unknownKinds.length > 0) {
      const spans = jsonSpans(text, file);
      const diagnostics = unknownKinds.map((k) => {
        const notes = didYouMean(k, knownKinds);
        if (notes.length === 0) notes.push(`known kinds: ${knownKinds.join(', ')}`);
        return settingsError(`unknown stage kind \`${k}\` in \`executor.kinds\``, spans.key.get(`${root}/executor/kinds/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`), notes);
      });
      return { executor: DEFAULT_EXECUTOR, file, sources, diagnostics };
    }
    return { executor: { ...DEFAULT_EXECUTOR, ...executor }, file, sources, diagnostics: [] };
  }
  return { executor: DEFAULT_EXECUTOR, diagnostics: [], sources: {} };
}

/** The places that may set a stage's job settings, least specific first, each named as a person writes it in the file. */
function layersFor(settings: ExecutorSettings, stage: { name: string; kind: string }): { place: string; values: SlurmJobSettings }[] {
  const declared = stage.name.replace(/\[.*$/, '');
  const { type: _type, kinds, stages, pollSeconds: _poll, ...defaults } = settings;
  const layers = [
    { place: 'executor', values: defaults },
    { place: `executor.kinds.${stage.kind}`, values: kinds[stage.kind] },
    { place: `executor.stages.${declared}`, values: declared === stage.name ? undefined : stages[declared] },
    { place: declared === stage.name ? `executor.stages.${declared}` : `executor.stages["${stage.name}"]`, values: stages[stage.name] },
  ];
  return layers.filter((l): l is { place: string; values: SlurmJobSettings } => l.values !== undefined);
}

/**
 * The job settings for one stage: the workspace defaults, then its kind's, then its declared name's, then its
 * generated name's, each field from the most specific place that sets it.
 */
export function jobSettingsFor(settings: ExecutorSettings, stage: { name: string; kind: string }): SlurmJobSettings {
  return Object.assign({}, ...layersFor(settings, stage).map((l) => l.values)) as SlurmJobSettings;
}

/**
 * Each field of jobSettingsFor's answer with the place it comes from, e.g. `executor.kinds.sft.time = "12:00:00"`:
 * what a person needs to find the setting behind a flag that sbatch refused.
 */
export function jobSettingPlaces(settings: ExecutorSettings, stage: { name: string; kind: string }): string[] {
  const from = new Map<string, string>();
  for (const { place, values } of layersFor(settings, stage)) {
    for (const [field, value] of Object.entries(values)) {
      if (value !== undefined) from.set(field, `${place}.${field} = ${JSON.stringify(value)}`);
    }
  }
  return [...from.values()];
}
