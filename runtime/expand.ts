// Expansion: AST statements → one stage per declaration and loop variant, with lets evaluated and references resolved.
import { subExpressions, type Expr, type InputDecl, type LetDecl, type LoopDecl, type LoopVar, type ObjectExpr, type StageDecl, type Statement } from '../grammar/ast.ts';
import {
  diagnostic, DiagnosticSink, locationFrom, mistakeOf, type Diagnostic, type DiagnosticCode, type SourceSpan,
} from '../grammar/diagnostics.ts';
import { nothingLeftOut, type LeftOut } from '../grammar/partial.ts';
import { didYouMean } from '../grammar/suggest.ts';
import { evaluate, evaluateString, INVALID, jsonEqual, objectFrom, renderValue, Scope, typeName, type EvalContext, type Value } from './expand-eval.ts';
import { variantsNote } from './format.ts';
import { canonicalJson } from './hash.ts';
import type { JsonValue } from './json.ts';
import { applyOverride, type Override } from './overrides.ts';

/** Most combinations one `for each` may enumerate (before `where`): a typo like range(0, 1e5) × range(0, 1e5) must not hang. */
export const MAX_COMBINATIONS = 100_000;
/** Most stages a pipeline may expand to; checking 20,000 takes about half a second, running them far longer. */
export const MAX_STAGES = 20_000;

export interface ExpandedInput {
  name: string;
  nameSpan: SourceSpan;
  /** Generated names of the upstream stages, in variant order. */
  stages: string[];
  /** A collection (`eval[*]`, `eval[head=true]`) rather than one stage. */
  many: boolean;
  span: SourceSpan;
  /** False when the reference could not be resolved (already reported); validation leaves it alone. */
  resolved: boolean;
}

/** One stage instance before validation: params as evaluated (no schema defaults yet). */
export interface ExpandedStage {
  name: string;
  declaredName: string;
  kind: string;
  decl: StageDecl;
  /** The params whose expressions evaluated; the others are in `failedParams`. */
  params: Record<string, JsonValue>;
  /** Params whose expression failed (already reported): validation checks the rest and leaves these alone. */
  failedParams: string[];
  inputs: ExpandedInput[];
  variant: Record<string, JsonValue>;
}

export interface ExpandResult {
  /** Declaration order; a loop stage's variants stay together, in variant order. */
  stages: ExpandedStage[];
  diagnostics: Diagnostic[];
}

interface Variant {
  label: string;
  values: Record<string, JsonValue>;
}

interface LoopInfo {
  decl: LoopDecl;
  /** Its values could not be evaluated: references to its stages resolve to nothing, silently. */
  failed: boolean;
  /** Variants kept after `where` and name collisions, in order. */
  variants: Variant[];
}

interface PendingInput {
  decl: InputDecl;
  /** Evaluated selector values, in the order of `decl.ref.select.pairs`. */
  selectorValues: Value[];
}

interface Pending {
  stage: ExpandedStage;
  loop: LoopInfo | null;
  label: string | null;
  inputs: PendingInput[];
}

function declaredStages(body: LoopDecl['body']): StageDecl[] {
  return body.flatMap((s) => (s.type === 'stage' ? [s] : s.type === 'loop' ? declaredStages(s.body) : []));
}

class Expander {
  private readonly sink = new DiagnosticSink();
  /**
   * While a loop's variants are evaluated: each mistake found in them with the labels of the variants it is in, so
   * that one in every variant is said once and one in some variants names them (reported when the loop ends).
   */
  private variantMistakes: Map<string, { diagnostic: Diagnostic; labels: Set<string> }> | null = null;
  private readonly stages = new Map<string, { decl: StageDecl; loop: LoopInfo | null }>();
  /** Stage and top-level let names, which share one namespace. */
  private readonly globals = new Map<string, SourceSpan>();
  private readonly topLets = new Map<string, SourceSpan>();
  /** The expression of each top-level let, to point into the list a loop variable ranges over. */
  private readonly topLetValues = new Map<string, Expr>();
  /** Lets declared inside loops, for conflicts with later globals and for "not in scope" notes. */
  private readonly loopLets = new Map<string, SourceSpan>();
  /** Loop variables (first declaration of each name), for conflicts with globals and for "not in scope" notes. */
  private readonly loopVars = new Map<string, SourceSpan>();
  /** Stages of rejected nested loops: references to them are not reported again. */
  private readonly suppressed = new Set<string>();
  private readonly loops = new Map<LoopDecl, LoopInfo>();
  private readonly pending: Pending[] = [];
  /** Stage instances made so far, and counted past MAX_STAGES without being made, so the message can say how many. */
  private stageCount = 0;
  /** The let whose value is being evaluated: a use of its own name there is a reference to itself. */
  private letBeingEvaluated: string | null = null;
  /** Where the pipeline went past MAX_STAGES. */
  private tooMany: SourceSpan | undefined;

  constructor(private readonly overrides: readonly Override[], private readonly leftOut: LeftOut) {}

  /** A name that a statement left out for its syntax errors may declare: uses of it are consequences, not mistakes. */
  private declaredByLeftOut(name: string): boolean {
    return this.leftOut.anyName || this.leftOut.names.has(name);
  }

  run(statements: readonly Statement[]): ExpandResult {
    this.declare(statements);
    const top = new Scope();
    for (const s of statements) {
      if (s.type === 'let') {
        this.evaluateLet(s, top, null);
        this.applyOverrides(s, top);
      } else if (s.type === 'stage') this.instantiate(s, top, null, null, {});
      else if (s.type === 'loop') this.expandLoop(this.loops.get(s)!, top);
    }
    if (this.tooMany !== undefined) {
      this.sink.report(diagnostic(
        'E_TOO_MANY_VARIANTS', `the pipeline makes ${this.stageCount.toLocaleString('en-US')} stages; at most ${MAX_STAGES.toLocaleString('en-US')} are allowed`,
        this.tooMany, ['narrow the loops, or split the matrix into several pipelines'],
      ));
      return { stages: [], diagnostics: this.sink.diagnostics };
    }
    for (const o of this.overrides.filter((x) => !this.topLets.has(x.name) && !this.declaredByLeftOut(x.name))) {
      this.sink.report(diagnostic('E_OVERRIDE', `-p ${o.text}: the pipeline has no top-level let \`${o.name}\``, undefined,
        [...didYouMean(o.name, this.topLets.keys()), `its top-level lets: ${[...this.topLets.keys()].join(', ') || 'none'}`]));
    }
    const stages = this.pending.map((p) => this.resolve(p));
    return { stages, diagnostics: this.sink.diagnostics };
  }

  /** Counts one more stage instance; false once past MAX_STAGES (it is then counted, not made). */
  private admit(span: SourceSpan): boolean {
    this.stageCount++;
    if (this.stageCount <= MAX_STAGES) return true;
    this.tooMany ??= span;
    return false;
  }

  /** The command line's `-p` values replace the let's value (or one key of it) before anything uses it. */
  private applyOverrides(s: LetDecl, scope: Scope): void {
    for (const o of this.overrides.filter((x) => x.name === s.name)) {
      const current = scope.get(s.name);
      if (current === INVALID || current === undefined) continue;
      const applied = applyOverride(current, o);
      if (applied.ok) scope.set(s.name, applied.value);
      else this.sink.report(diagnostic('E_OVERRIDE', `-p ${o.text}: ${applied.error}`, s.nameSpan));
    }
  }

  // ---- declarations: names, duplicates, nesting (once per declaration, not per variant)

  private declare(statements: readonly Statement[]): void {
    for (const s of statements) {
      if (s.type === 'let') {
        this.declareGlobal(s.name, s.nameSpan, 'let');
        if (!this.topLets.has(s.name)) {
          this.topLets.set(s.name, s.nameSpan);
          this.topLetValues.set(s.name, s.value);
        }
        this.checkKeys(s.value, false);
      } else if (s.type === 'stage') {
        this.declareStage(s, null);
      } else if (s.type === 'loop') {
        this.declareLoop(s);
      }
    }
  }

  /** A second declaration, with a note pointing at the first. */
  private duplicate(code: DiagnosticCode, message: string, span: SourceSpan, first: SourceSpan, verb: string): void {
    this.sink.report(diagnostic(code, message, span, [`first ${verb} at ${locationFrom(first, span.file)}`]));
  }

  private declareGlobal(name: string, span: SourceSpan, what: string): void {
    const first = this.globals.get(name) ?? this.loopLets.get(name) ?? this.loopVars.get(name);
    if (first) {
      this.duplicate('E_DUPLICATE_NAME', `\`${name}\` is already defined; this ${what} needs another name`, span, first, 'defined');
      return;
    }
    this.globals.set(name, span);
  }

  private declareStage(s: StageDecl, loop: LoopInfo | null): void {
    this.declareGlobal(s.name, s.nameSpan, 'stage');
    if (!this.stages.has(s.name)) this.stages.set(s.name, { decl: s, loop });
    this.checkKeys(s.params, true);
    const inputs = new Map<string, SourceSpan>();
    for (const input of s.inputs) {
      const first = inputs.get(input.name);
      if (first) {
        this.duplicate('E_DUPLICATE_INPUT', `input \`${input.name}\` is given twice`, input.nameSpan, first, 'given');
      } else {
        inputs.set(input.name, input.nameSpan);
      }
      if (input.ref.select?.type === 'match') for (const p of input.ref.select.pairs) this.checkKeys(p.value, false);
    }
  }

  private declareLoop(loop: LoopDecl): void {
    const info: LoopInfo = { decl: loop, failed: false, variants: [] };
    this.loops.set(loop, info);
    // Loop variables and loop lets form the loop's own namespace.
    const locals = new Map<string, SourceSpan>();
    for (const v of loop.vars) {
      const first = locals.get(v.name);
      if (first) {
        this.duplicate('E_DUPLICATE_LOOP_VAR', `loop variable \`${v.name}\` is declared twice`, v.nameSpan, first, 'declared');
      } else {
        locals.set(v.name, v.nameSpan);
        this.declareLoopVar(v.name, v.nameSpan);
      }
      this.checkKeys(v.values, false);
    }
    if (loop.where) this.checkKeys(loop.where, false);
    if (loop.label) this.checkKeys(loop.label, false);
    for (const s of loop.body) {
      if (s.type === 'loop') {
        this.sink.report(diagnostic(
          'E_NESTED_LOOP', '`for each` cannot be nested in another `for each`', s.headerSpan,
          ['list every variable in one loop instead: `for each a in [...], b in [...] { ... }`'],
        ));
        for (const d of declaredStages(s.body)) this.suppressed.add(d.name);
      } else if (s.type === 'stage') {
        this.declareStage(s, info);
      } else {
        const first = this.globals.get(s.name) ?? locals.get(s.name);
        if (first) {
          this.duplicate('E_DUPLICATE_NAME', `\`${s.name}\` is already defined; this let needs another name`, s.nameSpan, first, 'defined');
        } else {
          locals.set(s.name, s.nameSpan);
          if (!this.loopLets.has(s.name)) this.loopLets.set(s.name, s.nameSpan);
        }
        this.checkKeys(s.value, false);
      }
    }
  }

  /**
   * Inside its loop a variable would hide a let of the same name, and a `-p` of that let would change nothing there;
   * a stage of that name is a clash too, as stages and lets share one namespace.
   */
  private declareLoopVar(name: string, span: SourceSpan): void {
    const global = this.globals.get(name);
    if (!global) {
      if (!this.loopVars.has(name)) this.loopVars.set(name, span);
      return;
    }
    const notes = [`first defined at ${locationFrom(global, span.file)}`];
    if (this.topLets.has(name)) notes.push(`inside the loop \`${name}\` would be the loop variable, hiding the let (and any \`-p ${name}=...\`)`);
    this.sink.report(diagnostic('E_DUPLICATE_NAME', `\`${name}\` is already defined; this loop variable needs another name`, span, notes));
  }

  /** Reports keys given twice in any object literal of an expression (the params block itself included). */
  private checkKeys(e: Expr, isParams: boolean): void {
    if (e.type === 'object') this.checkObjectKeys(e, isParams);
    for (const c of subExpressions(e)) this.checkKeys(c, false);
  }

  private checkObjectKeys(o: ObjectExpr, isParams: boolean): void {
    const seen = new Map<string, SourceSpan>();
    for (const entry of o.entries) {
      const first = seen.get(entry.key);
      if (!first) {
        seen.set(entry.key, entry.keySpan);
        continue;
      }
      const message = isParams ? `param \`${entry.key}\` is given twice` : `key \`${entry.key}\` appears twice in this object`;
      this.duplicate('E_DUPLICATE_PARAM', message, entry.keySpan, first, 'given');
    }
  }

  // ---- evaluation

  private context(label: string | null): EvalContext {
    return {
      // Which variant went wrong matters when only some do (a division by a loop variable that is 0).
      report: (d) => {
        if (label === null || this.variantMistakes === null) return this.sink.report(d);
        const key = mistakeOf(d);
        const mistake = this.variantMistakes.get(key) ?? { diagnostic: d, labels: new Set<string>() };
        mistake.labels.add(label);
        this.variantMistakes.set(key, mistake);
      },
      explainUnknown: (name, span) => this.explainUnknown(name, span),
      declaredElsewhere: (name) => this.declaredByLeftOut(name),
    };
  }

  private explainUnknown(name: string, use: SourceSpan): string[] {
    if (this.letBeingEvaluated === name) return [`\`${name}\` refers to itself: a let's value cannot use the let it defines`];
    const topLet = this.topLets.get(name);
    if (topLet) return [`\`${name}\` is defined later, at ${locationFrom(topLet, use.file)}; a let must come before its use`];
    const loopLet = this.loopLets.get(name);
    if (loopLet) {
      return [`\`${name}\` is defined at ${locationFrom(loopLet, use.file)}, inside a \`for each\`; it is visible only after it, in that loop`];
    }
    const loopVar = this.loopVars.get(name);
    if (loopVar) return [`\`${name}\` is the variable of the \`for each\` at ${locationFrom(loopVar, use.file)} and exists only inside that loop`];
    if (this.stages.has(name)) return [`\`${name}\` is a stage; stages are used as inputs, e.g. \`(data: ${name})\``];
    return [];
  }

  private evaluateLet(s: LetDecl, scope: Scope, label: string | null): void {
    this.letBeingEvaluated = s.name;
    scope.set(s.name, evaluate(s.value, scope, this.context(label)));
    this.letBeingEvaluated = null;
  }

  private instantiate(decl: StageDecl, scope: Scope, loop: LoopInfo | null, label: string | null, variant: Record<string, JsonValue>): void {
    if (!this.admit(loop?.decl.headerSpan ?? decl.nameSpan)) return;
    const ctx = this.context(label);
    const entries: [string, JsonValue][] = [];
    const failedParams: string[] = [];
    for (const e of decl.params.entries) {
      const v = evaluate(e.value, scope, ctx);
      if (v === INVALID) failedParams.push(e.key);
      else entries.push([e.key, v]);
    }
    const inputs = decl.inputs.map((input) => ({
      decl: input,
      selectorValues: input.ref.select?.type === 'match' ? input.ref.select.pairs.map((p) => evaluate(p.value, scope, ctx)) : [],
    }));
    const stage: ExpandedStage = {
      name: label === null ? decl.name : `${decl.name}[${label}]`,
      declaredName: decl.name,
      kind: decl.kind,
      decl,
      params: objectFrom(entries),
      failedParams,
      inputs: [],
      variant,
    };
    this.pending.push({ stage, loop, label, inputs });
  }

  private expandLoop(info: LoopInfo, outer: Scope): void {
    const loop = info.decl;
    const ctx = this.context(null);
    const ranges: JsonValue[][] = [];
    // A variable declared twice is reported by declareLoop; its second list is left out, so no variant is named twice.
    const vars = loop.vars.filter((v, i) => loop.vars.findIndex((w) => w.name === v.name) === i);
    for (const v of vars) {
      const values = evaluate(v.values, outer, ctx);
      if (values === INVALID) {
        info.failed = true;
      } else if (!Array.isArray(values)) {
        this.sink.report(diagnostic('E_EXPR_TYPE', `\`${v.name}\` must range over a list, got ${typeName(values)}`, v.values.span));
        info.failed = true;
      } else {
        if (values.length === 0) {
          this.sink.report(diagnostic('E_EMPTY_MATRIX', `\`${v.name}\` ranges over an empty list, so the loop makes no variant`, v.values.span, undefined, 'warning'));
        }
        ranges.push(this.withoutRepeats(v, values));
      }
    }
    if (info.failed) return;
    const combinations = ranges.reduce((n, r) => n * r.length, 1);
    if (combinations > MAX_COMBINATIONS) {
      this.sink.report(diagnostic(
        'E_TOO_MANY_VARIANTS',
        `this \`for each\` makes ${combinations.toLocaleString('en-US')} combinations (${ranges.map((r) => r.length).join(' × ')}); at most ${MAX_COMBINATIONS.toLocaleString('en-US')} are allowed`,
        loop.headerSpan,
      ));
      info.failed = true;
      return;
    }

    const labels = new Map<string, Record<string, JsonValue>>();
    const collisions: string[] = [];
    const firstPending = this.pending.length;
    let passedWhere = 0;
    let whereFailed = false;
    this.variantMistakes = new Map();
    for (const combo of cartesian(ranges)) {
      const values: Record<string, JsonValue> = {};
      vars.forEach((v, i) => { values[v.name] = combo[i]!; });
      const scope = new Scope(outer);
      for (const [name, value] of Object.entries(values)) scope.set(name, value);
      if (loop.where) {
        const keep = this.passes(loop.where, scope);
        if (keep === null) {
          whereFailed = true;
          // The label's own mistakes are reported too (every error at once), though this variant is dropped.
          if (loop.label) evaluateString(loop.label, scope, ctx);
        }
        if (keep !== true) continue;
      }
      passedWhere++;
      // Past the stage limit a variant is only counted, so the message can say how many stages the file asks for.
      if (this.tooMany !== undefined) {
        this.stageCount += loop.body.filter((b) => b.type === 'stage').length;
        continue;
      }
      const label = loop.label
        ? evaluateString(loop.label, scope, ctx)
        : vars.map((v) => `${v.name}=${renderValue(values[v.name]!)}`).join(',');
      if (label === INVALID) continue;
      const same = labels.get(label);
      if (same) {
        collisions.push(`\`${label}\`: ${describeVariant(same)} and ${describeVariant(values)}`);
        continue;
      }
      labels.set(label, values);
      info.variants.push({ label, values });
      for (const s of loop.body) {
        if (s.type === 'let') this.evaluateLet(s, scope, label);
        else if (s.type === 'stage') this.instantiate(s, scope, info, label, values);
      }
    }
    for (const { diagnostic: d, labels } of this.variantMistakes.values()) {
      const some = labels.size < info.variants.length;
      this.sink.report(some ? { ...d, notes: [...(d.notes ?? []), variantsNote([...labels])] } : d);
    }
    this.variantMistakes = null;
    if (loop.where && passedWhere === 0 && !whereFailed && ranges.every((r) => r.length > 0)) {
      this.sink.report(diagnostic('E_EMPTY_MATRIX', 'the `where` filter leaves no variant', loop.where.span, undefined, 'warning'));
    }
    if (collisions.length > 0) {
      this.sink.report(diagnostic(
        'E_NAME_COLLISION', `${collisions.length === 1 ? 'two variants get' : 'variants get'} the same name`, loop.label?.span ?? loop.headerSpan,
        [...collisions.map((c) => `both named ${c}`), 'make the `named` label use every variable that differs'],
      ));
    }
    // Stage-major output (every variant of the first stage, then of the next), as users list them;
    // the sort is stable, so variants keep their order.
    const rank = new Map(loop.body.map((s, i) => [s, i]));
    const made = this.pending.splice(firstPending);
    made.sort((a, b) => rank.get(a.stage.decl)! - rank.get(b.stage.decl)!);
    // One push per stage: spreading 100,000 arguments into push() overflows the stack.
    for (const m of made) this.pending.push(m);
  }

  /** A loop variable's values with each repeat left out and reported at its second place: it would make the same variants twice. */
  private withoutRepeats(v: LoopVar, values: JsonValue[]): JsonValue[] {
    const places = new Map<string, number[]>();
    values.forEach((value, i) => {
      const key = canonicalJson(value);
      const seen = places.get(key);
      if (seen) seen.push(i);
      else places.set(key, [i]);
    });
    if (places.size === values.length) return values;
    for (const at of places.values()) {
      if (at.length === 1) continue;
      const first = this.valueSpan(v.values, at[0]!, values.length);
      const second = this.valueSpan(v.values, at[1]!, values.length);
      const times = at.length === 2 ? 'twice' : `${at.length} times`;
      this.sink.report(diagnostic(
        'E_NAME_COLLISION',
        `the value ${JSON.stringify(values[at[0]!])} appears ${times} in the list of \`${v.name}\` (items ${at.map((i) => i + 1).join(', ')})`,
        second ?? v.values.span,
        first && second ? [`first at ${locationFrom(first, second.file)}`, ...this.rangedOver(v, second.file)] : undefined,
      ));
    }
    return [...places.values()].map((at) => values[at[0]!]!);
  }

  /** Where the loop names the let whose list is pointed into, as the diagnostic is shown in the let. */
  private rangedOver(v: LoopVar, file: string): string[] {
    return v.values.type === 'name' ? [`\`${v.name}\` ranges over \`${v.values.name}\` at ${locationFrom(v.values.span, file)}`] : [];
  }

  /** Where a loop variable's i-th value is written: an item of a list literal, in the loop or in the let it names. */
  private valueSpan(values: Expr, index: number, count: number): SourceSpan | undefined {
    const overridden = values.type === 'name' && this.overrides.some((o) => o.name === values.name);
    const list = values.type === 'name' && !overridden ? this.topLetValues.get(values.name) : values;
    return list?.type === 'list' && list.items.length === count ? list.items[index]!.span : undefined;
  }

  /** Whether the variant passes the filter; null when the filter itself failed (reported). */
  private passes(where: Expr, scope: Scope): boolean | null {
    const v = evaluate(where, scope, this.context(null));
    if (v === INVALID) return null;
    if (typeof v !== 'boolean') {
      this.sink.report(diagnostic('E_EXPR_TYPE', `\`where\` must be a boolean, got ${typeName(v)}`, where.span));
      return null;
    }
    return v;
  }

  // ---- references

  private resolve(p: Pending): ExpandedStage {
    p.stage.inputs = p.inputs.map((input) => {
      const { decl } = input;
      const base = { name: decl.name, nameSpan: decl.nameSpan, span: decl.ref.span, many: decl.ref.select !== null };
      const stages = this.resolveReference(p, input);
      return stages === null ? { ...base, stages: [], resolved: false } : { ...base, stages, resolved: true };
    });
    return p.stage;
  }

  /** Generated names the reference stands for, or null when it cannot be resolved (reported unless a consequence). */
  private resolveReference(p: Pending, input: PendingInput): string[] | null {
    const ref = input.decl.ref;
    const target = this.stages.get(ref.name);
    if (!target) {
      if (this.suppressed.has(ref.name) || this.declaredByLeftOut(ref.name)) return null;
      const notes = this.topLets.has(ref.name) || this.loopLets.has(ref.name)
        ? [`\`${ref.name}\` is a let; inputs refer to stages`]
        : didYouMean(ref.name, this.stages.keys());
      this.sink.report(diagnostic('E_UNKNOWN_REFERENCE', `unknown stage \`${ref.name}\``, ref.nameSpan, notes));
      return null;
    }
    const loop = target.loop;
    if (!loop) {
      if (ref.select === null) return [ref.name];
      this.sink.report(diagnostic(
        'E_LOOP_REFERENCE', `\`${ref.name}\` is not declared in a \`for each\`, so it has no variants to select`, ref.span,
        [`write \`${ref.name}\``],
      ));
      return null;
    }
    if (loop.failed) return null;
    if (ref.select === null) {
      if (p.loop === loop) return [`${ref.name}[${p.label}]`];
      const example = loop.decl.vars[0]!.name;
      this.sink.report(diagnostic(
        'E_LOOP_REFERENCE', `\`${ref.name}\` is declared in a \`for each\`, so outside its loop it names many variants`, ref.span,
        [`did you mean \`${ref.name}[*]\`? (or \`${ref.name}[${example}=...]\` to select some)`],
      ));
      return null;
    }
    if (ref.select.type === 'all') {
      if (loop.variants.length === 0) {
        this.sink.report(diagnostic('E_EMPTY_SELECTION', `\`${ref.name}[*]\` collects nothing: its loop makes no variant`, ref.span));
        return null;
      }
      return loop.variants.map((v) => `${ref.name}[${v.label}]`);
    }

    const pairs = ref.select.pairs;
    const loopVars = loop.decl.vars.map((v) => v.name);
    let ok = true;
    pairs.forEach((pair, i) => {
      if (!loopVars.includes(pair.variable)) {
        this.sink.report(diagnostic(
          'E_UNKNOWN_VARIABLE', `\`${pair.variable}\` is not a variable of the loop that declares \`${ref.name}\``, pair.variableSpan,
          [...didYouMean(pair.variable, loopVars), `its variables: ${loopVars.join(', ')}`],
        ));
        ok = false;
      }
      if (input.selectorValues[i] === INVALID) ok = false;
    });
    if (!ok) return null;
    const matching = loop.variants.filter((v) => pairs.every((pair, i) => jsonEqual(v.values[pair.variable]!, input.selectorValues[i] as JsonValue)));
    if (matching.length === 0) {
      const notes = pairs.map((pair) => {
        const seen = new Map<string, JsonValue>();
        for (const v of loop.variants) seen.set(JSON.stringify(v.values[pair.variable]), v.values[pair.variable]!);
        return `\`${pair.variable}\` takes ${[...seen.values()].map((x) => JSON.stringify(x)).join(', ') || 'no value'}`;
      });
      this.sink.report(diagnostic('E_EMPTY_SELECTION', `\`${ref.name}[...]\` matches no variant`, ref.span, notes));
      return null;
    }
    return matching.map((v) => `${ref.name}[${v.label}]`);
  }
}

function describeVariant(values: Record<string, JsonValue>): string {
  return `{${Object.entries(values).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`;
}

/** Every combination, the first list outermost (its value changes slowest). */
function* cartesian(lists: JsonValue[][]): Generator<JsonValue[]> {
  if (lists.some((l) => l.length === 0)) return;
  const idx = new Array<number>(lists.length).fill(0);
  while (true) {
    yield idx.map((i, k) => lists[k]![i]!);
    let k = lists.length - 1;
    while (k >= 0 && ++idx[k]! === lists[k]!.length) {
      idx[k] = 0;
      k--;
    }
    if (k < 0) return;
  }
}

/**
 * Expands a program (entry file and includes merged, in order); `include` statements are skipped. `overrides` replace
 * top-level lets (the command line's `-p`); one naming no top-level let is a diagnostic. `leftOut`: what statements
 * dropped for their syntax errors declared, whose uses are not reported.
 */
export function expandPipeline(statements: readonly Statement[], overrides: readonly Override[] = [], leftOut: LeftOut = nothingLeftOut()): ExpandResult {
  return new Expander(overrides, leftOut).run(statements);
}
