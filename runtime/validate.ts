// Validation: expanded stages → StageInstances checked against their kinds (JSON Schema via ajv, inputs), in topological order.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { Expr, ObjectEntry, ObjectExpr } from '../grammar/ast.ts';
import { diagnostic, DiagnosticSink, mistakeOf, type Diagnostic, type SourceSpan } from '../grammar/diagnostics.ts';
import { didYouMean } from '../grammar/suggest.ts';
import type { CheckContext, InputSpec, ParamsSchema, StageKind } from '../stages/kind.ts';
import type { ExpandedStage } from './expand.ts';
import { typeName } from './expand-eval.ts';
import { variantsNote } from './format.ts';
import type { JsonValue } from './json.ts';
import { workspaceRelative } from './keys.ts';
import type { InputBinding, StageInstance } from './pipeline.ts';

export interface ValidateResult {
  /** Topological order: every stage after the stages it takes as inputs. */
  stages: StageInstance[];
  diagnostics: Diagnostic[];
}

// strict off: kinds may annotate schemas freely; verbose: errors carry the schema for "did you mean" notes.
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true });
/** One compiled validator per schema: compiling is slow, validating a thousand instances must not be. */
const compiled = new WeakMap<ParamsSchema, ValidateFunction>();

/**
 * Every integer parameter gets at most 2^53 - 1 unless its kind says less: a literal such as 99999999999999999999
 * would otherwise be rounded silently to a different whole number (and ask for 1e20 of something).
 */
function withExactIntegers(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withExactIntegers);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) out[k] = k === 'default' || k === 'enum' || k === 'const' ? v : withExactIntegers(v);
  const type = out.type;
  const integer = type === 'integer' || (Array.isArray(type) && type.includes('integer'));
  if (integer && out.maximum === undefined) out.maximum = Number.MAX_SAFE_INTEGER;
  return out;
}

/** The kind's params validator, compiled once; throws when `kind.params` is no valid JSON Schema. */
export function validatorFor(kind: StageKind): ValidateFunction {
  let v = compiled.get(kind.params);
  if (!v) {
    v = ajv.compile(withExactIntegers(kind.params) as ParamsSchema);
    compiled.set(kind.params, v);
  }
  return v;
}

/** A short preview of a value for messages: scalars in full, containers by type. */
function preview(v: unknown): string {
  const json = v as JsonValue;
  if (json === null || typeof json !== 'object') return `${typeName(json)} ${JSON.stringify(json)}`;
  return typeName(json);
}

/** The JSON types a `type` error asked for, as the language calls them. */
function typeNames(e: ErrorObject): string[] {
  return ([] as string[]).concat(e.params.type as string | string[]).map((t) => (t === 'array' ? 'list' : t));
}

/** A key as one step of a JSON pointer (`/` and `~` escaped). */
function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function decodePointer(pointer: string): string[] {
  return pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** `patterns["\n"]`, `columns[0]`, `optim.lr`: how a path into the params reads in a message. */
function displayPath(segments: string[], params: JsonValue): string {
  let out = '';
  let value: JsonValue | undefined = params;
  for (const seg of segments) {
    if (Array.isArray(value)) {
      out += `[${seg}]`;
      value = value[Number(seg)];
    } else {
      out += out === '' ? seg : /^[A-Za-z_][A-Za-z0-9_]*$/.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`;
      value = value && typeof value === 'object' ? (value as Record<string, JsonValue>)[seg] : undefined;
    }
  }
  return out;
}

interface Located {
  /** The written expression for the path, or the nearest enclosing one (e.g. a let name standing for an object). */
  expr: Expr;
  /** The key as written, when the path's last step is a written key. */
  keySpan?: SourceSpan;
  /** The whole path was found in the source (false: the value came from an expression or a default). */
  exact: boolean;
}

function locate(params: ObjectExpr, segments: string[]): Located {
  let expr: Expr = params;
  let keySpan: SourceSpan | undefined;
  for (const seg of segments) {
    if (expr.type === 'object') {
      // The last entry wins when a key is repeated (E_DUPLICATE_PARAM), as in evaluation.
      const entry: ObjectEntry | undefined = [...expr.entries].reverse().find((e) => e.key === seg);
      if (!entry) return { expr, exact: false };
      expr = entry.value;
      keySpan = entry.keySpan;
    } else if (expr.type === 'list' && /^\d+$/.test(seg) && Number(seg) < expr.items.length) {
      expr = expr.items[Number(seg)]!;
      keySpan = undefined;
    } else {
      return { expr, exact: false };
    }
  }
  return { expr, keySpan, exact: true };
}

/** The `description` of the innermost then/else branch an error's schema path passes through: why it applies, what to do. */
function branchDescription(schema: unknown, schemaPath: string): string | undefined {
  const segments = schemaPath.replace(/^#\/?/, '').split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let node = schema;
  let found: string | undefined;
  let previous = '';
  for (const seg of segments) {
    if (typeof node !== 'object' || node === null) break;
    node = (node as Record<string, unknown>)[seg];
    // A param named `then` sits under `properties`; the keyword never does.
    const keyword = previous !== 'properties' && (seg === 'then' || seg === 'else');
    previous = seg;
    if (keyword && typeof node === 'object' && node !== null) {
      const d = (node as { description?: unknown }).description;
      found = typeof d === 'string' ? d : undefined;
    }
  }
  return found;
}

function paramDiagnostics(errors: ErrorObject[], stage: ExpandedStage, kind: StageKind, params: JsonValue): Diagnostic[] {
  const out: Diagnostic[] = [];
  const decl = stage.decl;
  const branchErrors = (e: ErrorObject) => errors.filter((b) => b !== e && b.schemaPath.startsWith(`${e.schemaPath}/`));
  for (const e of errors) {
    // Errors inside anyOf/oneOf branches say less than the keyword's own summary error; for if/then/else it is
    // the other way round: `if` only says "must match then", the then/else errors say what is wrong.
    if (/\/(anyOf|oneOf)\//.test(e.schemaPath) || e.keyword === 'if') continue;
    const segments = decodePointer(e.instancePath);
    const where = locate(decl.params, segments);
    const name = displayPath(segments, params);
    // Not exact: the value came through a let (blame the name that brought it) or a default (the params block).
    const valueSpan = where.expr.span;
    const fromDefault = where.exact ? '' : ' (not written here: it comes from an expression or a default)';
    const conditional = /\/(then|else)\//.test(e.schemaPath) ? [branchDescription(kind.params, e.schemaPath) ?? 'this rule applies because of the values of other params'] : [];
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = String(e.params.additionalProperty);
        const inObject = locate(decl.params, [...segments, key]);
        const span = inObject.exact ? inObject.keySpan ?? inObject.expr.span : where.expr.span;
        const known = Object.keys((e.parentSchema?.properties as Record<string, unknown> | undefined) ?? {});
        const notes = didYouMean(key, known);
        if (notes.length === 0 && known.length > 0) notes.push(`known: ${known.join(', ')}`);
        const message = segments.length === 0
          ? `unknown param \`${key}\` for stage kind \`${kind.name}\``
          : `unknown key \`${key}\` in param \`${name}\``;
        out.push(diagnostic('E_UNKNOWN_PARAM', message, span, notes));
        break;
      }
      case 'required': {
        const key = String(e.params.missingProperty);
        // A `then` branch may require a param it does not describe; the kind's own schema does.
        const props = (e.parentSchema?.properties as Record<string, { description?: string }> | undefined) ?? {};
        const description = props[key]?.description ?? (segments.length === 0 ? kind.params.properties[key]?.description : undefined);
        const notes = description ? [`\`${key}\`: ${description}`] : [];
        notes.push(...conditional);
        if (segments.length === 0) {
          out.push(diagnostic('E_MISSING_PARAM', `stage \`${decl.name}\` (kind \`${kind.name}\`) needs param \`${key}\``, decl.nameSpan, notes));
        } else {
          out.push(diagnostic('E_MISSING_PARAM', `param \`${name}\` needs key \`${key}\``, where.expr.span, notes));
        }
        break;
      }
      case 'type': {
        out.push(diagnostic('E_PARAM_TYPE', `param \`${name}\` must be ${typeNames(e).join(' or ')}, got ${preview(e.data)}${fromDefault}`, valueSpan, conditional));
        break;
      }
      case 'anyOf':
      case 'oneOf': {
        const branches = branchErrors(e);
        const onlyTypes = branches.length > 0 && branches.every((b) => b.keyword === 'type' && b.instancePath === e.instancePath);
        if (onlyTypes) {
          const wanted = [...new Set(branches.flatMap(typeNames))];
          out.push(diagnostic('E_PARAM_TYPE', `param \`${name}\` must be ${wanted.join(' or ')}, got ${preview(e.data)}${fromDefault}`, valueSpan));
        } else {
          out.push(diagnostic('E_PARAM_VALUE', `param \`${name}\` matches none of the allowed forms${fromDefault}`, valueSpan,
            typeof e.parentSchema?.description === 'string' ? [`\`${name}\`: ${e.parentSchema.description}`] : []));
        }
        break;
      }
      case 'enum': {
        const allowed = (e.params.allowedValues as JsonValue[]).map((v) => JSON.stringify(v));
        const notes = typeof e.data === 'string' ? didYouMean(e.data, (e.params.allowedValues as unknown[]).filter((v): v is string => typeof v === 'string')) : [];
        out.push(diagnostic('E_PARAM_VALUE', `param \`${name}\` must be one of ${allowed.join(', ')}, got ${JSON.stringify(e.data)}${fromDefault}`, valueSpan, notes));
        break;
      }
      case 'const':
        out.push(diagnostic('E_PARAM_VALUE', `param \`${name}\` must be ${JSON.stringify(e.params.allowedValue)}, got ${JSON.stringify(e.data)}${fromDefault}`, valueSpan, conditional));
        break;
      default:
        out.push(diagnostic('E_PARAM_VALUE', `param \`${name}\` ${e.message ?? 'is invalid'}, got ${preview(e.data)}${fromDefault}`, valueSpan, conditional));
    }
  }
  // An error shape not foreseen above must still fail the stage rather than let invalid params through.
  if (out.length === 0 && errors.length > 0) {
    out.push(diagnostic('E_PARAM_VALUE', `params ${errors[0]!.message ?? 'are invalid'}`, decl.params.span));
  }
  return out;
}

/** The spec of a named input: its own entry, else the kind's `*` entry (any name). */
function inputSpec(kind: StageKind, name: string): InputSpec | undefined {
  return Object.hasOwn(kind.inputs, name) ? kind.inputs[name] : kind.inputs['*'];
}

function checkInputs(stage: ExpandedStage, kind: StageKind, sink: DiagnosticSink): void {
  const declared = Object.keys(kind.inputs).filter((n) => n !== '*');
  for (const input of stage.inputs) {
    const spec = inputSpec(kind, input.name);
    if (!spec) {
      const notes = didYouMean(input.name, declared);
      notes.push(declared.length > 0 ? `inputs of \`${kind.name}\`: ${declared.join(', ')}` : `\`${kind.name}\` takes no inputs`);
      sink.report(diagnostic('E_UNKNOWN_INPUT', `stage kind \`${kind.name}\` has no input \`${input.name}\``, input.nameSpan, notes));
      continue;
    }
    if (!input.resolved || spec.anyArity || Boolean(spec.many) === input.many) continue;
    const ref = input.stages[0]?.replace(/\[.*$/, '') ?? stage.decl.inputs.find((i) => i.name === input.name)?.ref.name ?? '';
    const message = spec.many
      ? `input \`${input.name}\` of \`${kind.name}\` takes a collection, got the single stage \`${input.stages[0]}\``
      : `input \`${input.name}\` of \`${kind.name}\` takes one stage, got a collection of ${input.stages.length}`;
    const notes = spec.many ? [`to pass every variant, write \`${ref}[*]\``] : ['refer to one stage by its name (inside a loop, the same variant)'];
    sink.report(diagnostic('E_INPUT_ARITY', message, input.span, notes));
  }
  for (const [name, spec] of Object.entries(kind.inputs)) {
    if (name === '*' || spec.optional || stage.inputs.some((i) => i.name === name)) continue;
    sink.report(diagnostic(
      'E_MISSING_INPUT', `stage \`${stage.declaredName}\` (kind \`${kind.name}\`) needs input \`${name}\``, stage.decl.nameSpan,
      [`\`${name}\`: ${spec.description}`],
    ));
  }
}

function toInstance(stage: ExpandedStage, params: Record<string, JsonValue>): StageInstance {
  const inputs: Record<string, InputBinding> = {};
  for (const i of stage.inputs) inputs[i.name] = { stages: i.stages, many: i.many, span: i.span };
  return {
    name: stage.name,
    declaredName: stage.declaredName,
    kind: stage.kind,
    params,
    inputs,
    variant: stage.variant,
    span: stage.decl.nameSpan,
  };
}

/**
 * Stages in topological order: depth first from the declaration order, each stage's inputs in the order written.
 * Reports every dependency cycle once per cycle of declared stages.
 */
function orderStages(instances: StageInstance[], sink: DiagnosticSink): StageInstance[] {
  const byName = new Map(instances.map((s) => [s.name, s]));
  const deps = (s: StageInstance) =>
    Object.values(s.inputs).flatMap((b) => b.stages.filter((n) => byName.has(n)).map((n) => ({ name: n, span: b.span })));
  const state = new Map<string, 'open' | 'done'>();
  const order: StageInstance[] = [];
  const reportedCycles = new Set<string>();
  for (const root of instances) {
    if (state.has(root.name)) continue;
    // Iterative DFS: a long chain of stages must not overflow the call stack.
    const stack = [{ stage: root, next: 0, edges: deps(root) }];
    state.set(root.name, 'open');
    while (stack.length > 0) {
      const top = stack.at(-1)!;
      if (top.next < top.edges.length) {
        const edge = top.edges[top.next++]!;
        const seen = state.get(edge.name);
        if (seen === undefined) {
          const next = byName.get(edge.name)!;
          state.set(next.name, 'open');
          stack.push({ stage: next, next: 0, edges: deps(next) });
        } else if (seen === 'open') {
          const from = stack.findIndex((f) => f.stage.name === edge.name);
          const cycle = stack.slice(from).map((f) => f.stage);
          const key = cycle.map((s) => s.declaredName).join('\u0000');
          if (!reportedCycles.has(key)) {
            reportedCycles.add(key);
            const names = [...cycle.map((s) => s.name), edge.name].map((n) => `\`${n}\``).join(' → ');
            sink.report(diagnostic('E_CYCLE', `stages depend on each other in a cycle: ${names}`, edge.span));
          }
        }
      } else {
        stack.pop();
        state.set(top.stage.name, 'done');
        order.push(top.stage);
      }
    }
  }
  return order;
}

/** Where the pipeline lives, for the kinds' own checks (StageKind.check); tests of pure validation may leave it out. */
export interface ValidateEnv {
  workspace: string;
  pipelineFiles: string[];
  /** Statements were left out for their syntax errors, or an include could not be read: more stages may exist. */
  incomplete?: boolean;
}

/** The kind's own checks of params that passed the schema, located at the param value, key or input they name. */
function kindChecks(
  stage: ExpandedStage, kind: StageKind, params: Record<string, JsonValue>, env: ValidateEnv, outputs: string[],
  byName: ReadonlyMap<string, ExpandedStage>, sink: DiagnosticSink,
): void {
  // The kind judges the stages given as inputs (a report's baseline among them): with one unresolved (reported, or a
  // stage left out for its syntax errors) it would see only part of them.
  if (!kind.check || stage.inputs.some((i) => !i.resolved)) return;
  const upstream = Object.fromEntries(stage.inputs.map((i) => [i.name, i.stages.map((name) => ({ name, variant: byName.get(name)?.variant ?? {} }))]));
  const ctx: CheckContext = {
    workspace: env.workspace, pipelineFiles: env.pipelineFiles, file: stage.decl.nameSpan.file, outputs, inputs: stage.inputs.map((i) => i.name), upstream,
    ...(env.incomplete ? { outputsIncomplete: true } : {}),
  };
  for (const problem of kind.check(params, ctx)) {
    let span: SourceSpan = stage.decl.nameSpan;
    if (problem.input !== undefined) {
      span = stage.inputs.find((i) => i.name === problem.input)?.nameSpan ?? span;
    } else if (problem.param !== undefined) {
      const where = locate(stage.decl.params, problem.param);
      span = problem.atKey && where.exact && where.keySpan ? where.keySpan : where.expr.span;
    }
    sink.report(diagnostic(problem.code, problem.message, span, problem.notes, problem.severity));
  }
}

/**
 * Parameter problems of loop stages, gathered so that one found in some variants of a stage but not all says which
 * (`in the variant \`x=1.5\``): the same frame repeated per variant would not. One in every variant is said once.
 */
class VariantProblems {
  private readonly problems = new Map<string, { diagnostic: Diagnostic; declaredName: string; labels: string[] }>();
  private readonly variantCount = new Map<string, number>();

  constructor(stages: readonly ExpandedStage[]) {
    for (const s of stages) this.variantCount.set(s.declaredName, (this.variantCount.get(s.declaredName) ?? 0) + 1);
  }

  add(d: Diagnostic, stage: ExpandedStage): void {
    const key = mistakeOf(d);
    const problem = this.problems.get(key) ?? { diagnostic: d, declaredName: stage.declaredName, labels: [] };
    // A generated name is `declared[label]`.
    if (stage.name !== stage.declaredName) problem.labels.push(stage.name.slice(stage.declaredName.length + 1, -1));
    this.problems.set(key, problem);
  }

  reportTo(sink: DiagnosticSink): void {
    for (const { diagnostic: d, declaredName, labels } of this.problems.values()) {
      const some = labels.length > 0 && labels.length < (this.variantCount.get(declaredName) ?? 0);
      sink.report(some ? { ...d, notes: [...(d.notes ?? []), variantsNote(labels)] } : d);
    }
  }
}

export function validatePipeline(expanded: readonly ExpandedStage[], kinds: Record<string, StageKind>, env?: ValidateEnv): ValidateResult {
  const sink = new DiagnosticSink();
  const kindNames = Object.keys(kinds);
  const instances: StageInstance[] = [];
  /** Stages whose params passed their schema: the kinds' own checks run once every stage's outputs are known. */
  const valid: { stage: ExpandedStage; kind: StageKind }[] = [];
  const paramProblems = new VariantProblems(expanded);
  for (const stage of expanded) {
    const kind = Object.hasOwn(kinds, stage.kind) ? kinds[stage.kind] : undefined;
    const params = stage.params;
    if (!kind) {
      sink.report(diagnostic('E_UNKNOWN_KIND', `unknown stage kind \`${stage.kind}\``, stage.decl.kindSpan, [
        ...didYouMean(stage.kind, kindNames),
        `known kinds: ${kindNames.join(', ')}`,
      ]));
    } else {
      checkInputs(stage, kind, sink);
      // A param whose expression failed is already reported: the others are still checked (all mistakes at once),
      // with a stand-in value for it so it is neither missing nor judged by its type.
      // (A stage with one never becomes an instance that runs: the pipeline has errors.)
      const failed = stage.failedParams.filter((k) => !Object.hasOwn(params, k));
      const checked = failed.length === 0 ? params : { ...params, ...Object.fromEntries(failed.map((k) => [k, null])) };
      const validate = validatorFor(kind);
      if (!validate(checked)) {
        const errors = (validate.errors ?? []).filter((e) => !failed.some((k) => e.instancePath === `/${pointerToken(k)}` || e.instancePath.startsWith(`/${pointerToken(k)}/`)));
        for (const d of paramDiagnostics(errors, stage, kind, checked)) paramProblems.add(d, stage);
      } else if (failed.length === 0) {
        valid.push({ stage, kind });
      }
    }
    instances.push(toInstance(stage, params));
  }
  paramProblems.reportTo(sink);
  if (env) {
    const outputs = valid.flatMap(({ stage, kind }) => kind.workspaceOutputs?.(stage.params) ?? []).map((o) => workspaceRelative(env.workspace, o));
    const byName = new Map(expanded.map((s) => [s.name, s]));
    for (const { stage, kind } of valid) kindChecks(stage, kind, stage.params, env, outputs, byName, sink);
  }
  return { stages: orderStages(instances, sink), diagnostics: sink.diagnostics };
}
