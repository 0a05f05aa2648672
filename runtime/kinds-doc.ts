// `pausepipe kinds`: a reference of every stage kind, written from its JSON Schema and input specs.
import type { StageKind } from '../stages/kind.ts';

interface PropertyDoc {
  name: string;
  type: string;
  required: boolean;
  default?: string;
  description: string;
}

function typeOf(schema: Record<string, unknown>): string {
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  if ('const' in schema) return JSON.stringify(schema.const);
  const types = Array.isArray(schema.type) ? (schema.type as string[]) : typeof schema.type === 'string' ? [schema.type] : [];
  const items = schema.items as Record<string, unknown> | undefined;
  const shown = types.map((t) => (t === 'array' && items ? `${typeOf(items)}[]` : t));
  if (Array.isArray(schema.oneOf) || Array.isArray(schema.anyOf)) {
    shown.push(...((schema.oneOf ?? schema.anyOf) as Record<string, unknown>[]).map(typeOf));
  }
  return shown.length > 0 ? shown.join(' | ') : 'any';
}

/**
 * A kind's params, each followed by the keys of its value where the schema lists them (`train.all`,
 * `overrides.hidden_size`): a nested key is checked as strictly as a param, so the reference names it too.
 */
function properties(kind: StageKind): PropertyDoc[] {
  return describe(kind.params.properties, kind.params.required ?? [], '');
}

function describe(props: Record<string, Record<string, unknown>>, requiredNames: readonly string[], prefix: string): PropertyDoc[] {
  const required = new Set(requiredNames);
  return Object.entries(props).flatMap(([name, schema]) => {
    const row: PropertyDoc = {
      name: prefix + name,
      type: typeOf(schema),
      required: required.has(name),
      default: 'default' in schema ? JSON.stringify(schema.default) : undefined,
      description: typeof schema.description === 'string' ? schema.description : '',
    };
    const nested = schema.properties as Record<string, Record<string, unknown>> | undefined;
    return nested ? [row, ...describe(nested, (schema.required as string[] | undefined) ?? [], `${prefix}${name}.`)] : [row];
  });
}

function inputName(name: string): string {
  return name === '*' ? '(any name)' : name;
}

function inputArity(spec: StageKind['inputs'][string]): string {
  const arity = spec.anyArity ? 'one or a collection' : spec.many ? 'collection' : 'one stage';
  return spec.optional ? `${arity}, optional` : arity;
}

export function kindsText(kinds: Record<string, StageKind>): string {
  const out: string[] = [];
  for (const kind of Object.values(kinds).sort((a, b) => a.name.localeCompare(b.name))) {
    out.push(`${kind.name} (version ${kind.version})`, `  ${kind.description}`, '  params:');
    for (const p of properties(kind)) {
      const dflt = p.required ? ' (required)' : p.default !== undefined ? ` = ${p.default}` : '';
      out.push(`    ${p.name}: ${p.type}${dflt}`, `      ${p.description}`);
    }
    const inputs = Object.entries(kind.inputs);
    out.push(inputs.length > 0 ? '  inputs:' : '  inputs: none');
    for (const [name, spec] of inputs) out.push(`    ${inputName(name)} (${inputArity(spec)})`, `      ${spec.description}`);
    out.push('');
  }
  return `${out.join('\n')}`;
}

export function kindsMarkdown(kinds: Record<string, StageKind>): string {
  const cell = (t: string) => t.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const out: string[] = ['# Stage kinds', ''];
  for (const kind of Object.values(kinds).sort((a, b) => a.name.localeCompare(b.name))) {
    out.push(`## \`${kind.name}\` (version ${kind.version})`, '', kind.description, '');
    out.push('| param | type | default | description |', '|---|---|---|---|');
    for (const p of properties(kind)) {
      out.push(`| \`${p.name}\` | ${cell(p.type)} | ${p.required ? 'required' : p.default !== undefined ? `\`${cell(p.default)}\`` : ''} | ${cell(p.description)} |`);
    }
    const inputs = Object.entries(kind.inputs);
    out.push('');
    if (inputs.length === 0) out.push('No inputs.', '');
    else {
      out.push('| input | takes | description |', '|---|---|---|');
      for (const [name, spec] of inputs) out.push(`| \`${inputName(name)}\` | ${inputArity(spec)} | ${cell(spec.description)} |`);
      out.push('');
    }
  }
  return out.join('\n');
}
