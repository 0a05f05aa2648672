// Tests for runtime/validate.ts: schema defaults, ajv errors mapped to source spans, inputs, cycles and order.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { StageKind } from '../../stages/kind.ts';
import { describe, expectDiagnostics, expectPipeline, parsePipe, PREAMBLE, TEST_KINDS } from '../helpers/pipe.ts';

const validate = suite('validate');

/** [code, message, line, column, notes] of every diagnostic. */
function reported(text: string, kinds?: Record<string, StageKind>): unknown[] {
  return parsePipe(text, {}, kinds).diagnostics.map((d) => [d.code, d.message, d.span?.line, d.span?.column, d.notes ?? []]);
}

validate('schema defaults fill params that are not written', () => {
  const stages = expectPipeline(parsePipe(PREAMBLE)).stages;
  assert.equal(stages.map((s) => [s.name, s.params]), [
    ['data', { path: '../shared/data/gsm8k', val_fraction: 0.1 }],
    ['base', { model: 'tiny', options: { init: 'mean' } }],
    ['paused', { n_random_pauses: 2, variable: false, tokenizer: null, patterns: {}, columns: ['answer'], mode: 'insert' }],
  ]);
});

validate('a param problem of some variants names them; one of every variant is said once, without a note', () => {
  const text = `${PREAMBLE}
for each e in [1, 1.5, 2, 3, 4, 5, 6] {
  stage s = sft(model: base, data: paused) { epochs: if e > 2 then "many" else e, lr: "fast" }
}`;
  assert.equal(reported(text), [
    ['E_PARAM_TYPE', 'param `epochs` must be integer, got number 1.5', 5, 54, ['in the variant `e=1.5`']],
    ['E_PARAM_TYPE', 'param `epochs` must be integer, got string "many"', 5, 54, ['in the variants `e=3`, `e=4`, `e=5` and 1 more']],
    ['E_PARAM_TYPE', 'param `lr` must be number, got string "fast"', 5, 87, []],
  ]);
});

validate('defaults are fresh objects per instance', () => {
  const stages = expectPipeline(parsePipe('stage a = surgery { }\nstage b = surgery { }')).stages;
  assert.is.not(stages[0]!.params.options, stages[1]!.params.options);
});

validate('instances carry kind, declared name, inputs with spans, and the span of their name', () => {
  const [, , paused] = expectPipeline(parsePipe(PREAMBLE)).stages;
  assert.equal([paused!.kind, paused!.declaredName, paused!.span.line, paused!.span.column], ['inject_pauses', 'paused', 3, 7]);
  assert.equal(paused!.inputs.data!.stages, ['data']);
  assert.equal([paused!.inputs.data!.many, paused!.inputs.data!.span.column], [false, 36]);
});

validate('a wrong type names the param, the wanted and the given type, at the value', () => {
  assert.equal(reported(`${PREAMBLE}\nstage s = sft(model: base, data: paused) {\n  lr: "fast"\n  epochs: 1.5\n}`), [
    ['E_PARAM_TYPE', 'param `lr` must be number, got string "fast"', 5, 7, []],
    ['E_PARAM_TYPE', 'param `epochs` must be integer, got number 1.5', 6, 11, []],
  ]);
});

validate('a union type lists every accepted type; lists are called lists', () => {
  assert.equal(reported('stage s = sh { command: 3 }\nstage t = inject_pauses(data: s) { tokenizer: [] }'), [
    ['E_PARAM_TYPE', 'param `command` must be string or list, got number 3', 1, 25, []],
    ['E_PARAM_TYPE', 'param `tokenizer` must be string or null, got list', 2, 47, []],
  ]);
});

validate('errors deep in lists and objects point at the element and name its path', () => {
  assert.equal(reported(`${PREAMBLE}\nstage p = inject_pauses(data: data) {\n  columns: ["a", 2]\n  patterns: { "\\n": 1, "=": -1 }\n}`), [
    ['E_PARAM_TYPE', 'param `columns[1]` must be string, got number 2', 5, 18, []],
    ['E_PARAM_VALUE', 'param `patterns["="]` must be >= 0, got number -1', 6, 29, []],
  ]);
});

validate('an unknown param points at its key with a suggestion', () => {
  assert.equal(reported(`${PREAMBLE}\nstage p = inject_pauses(data: data) { n_random_pause: 3 }`), [
    ['E_UNKNOWN_PARAM', 'unknown param `n_random_pause` for stage kind `inject_pauses`', 4, 39, ['did you mean `n_random_pauses`?']],
  ]);
});

validate('an unknown key inside an object param lists the known keys when none is close', () => {
  assert.equal(reported('stage s = surgery { options: { init: "mean", zzz: 1 } }'), [
    ['E_UNKNOWN_PARAM', 'unknown key `zzz` in param `options`', 1, 46, ['known: init']],
  ]);
});

validate('a missing required param is reported at the stage name with its description', () => {
  assert.equal(reported('stage d = gsm8k { }\nstage s = surgery { options: { } }'), [
    ['E_MISSING_PARAM', 'stage `d` (kind `gsm8k`) needs param `path`', 1, 7, ['`path`: Folder holding train.jsonl and test.jsonl.']],
    ['E_MISSING_PARAM', 'param `options` needs key `init`', 2, 30, ['`init`: Pause embedding init.']],
  ]);
});

validate('enum, minimum and maximum violations are E_PARAM_VALUE with the rule', () => {
  assert.equal(reported(`${PREAMBLE}\nstage p = inject_pauses(data: data) { mode: "apend" }\nstage g = gsm8k { path: "x", val_fraction: 1.5 }`), [
    ['E_PARAM_VALUE', 'param `mode` must be one of "insert", "append", got "apend"', 4, 45, ['did you mean `append`?']],
    ['E_PARAM_VALUE', 'param `val_fraction` must be <= 1, got number 1.5', 5, 44, []],
  ]);
});

validate('an integer param beyond 2^53 - 1 is refused where written, also inside objects: it could not be exact', () => {
  // Literals that large are refused by the parser already (E_NUMBER_RANGE); computed ones reach validation.
  assert.equal(reported(`${PREAMBLE}\nstage p = inject_pauses(data: data) { n_random_pauses: 1e10 * 1e10, patterns: { "=": 9007199254740991 + 1 } }`), [
    ['E_PARAM_VALUE', 'param `n_random_pauses` must be <= 9007199254740991, got number 100000000000000000000', 4, 56, []],
    ['E_PARAM_VALUE', 'param `patterns["="]` must be <= 9007199254740991, got number 9007199254740992', 4, 86, []],
  ]);
});

validate('a value from a let is blamed on the expression that brought it in', () => {
  assert.equal(reported(`${PREAMBLE}\nlet pats = { "=": -1 }\nstage p = inject_pauses(data: data) { patterns: pats }`), [
    ['E_PARAM_VALUE', 'param `patterns["="]` must be >= 0, got number -1 (not written here: it comes from an expression or a default)', 5, 49, []],
  ]);
});

validate('a param error in a loop is reported once for all variants', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each x in [1, 2, 3] { stage t = sft(model: base, data: paused) { epochs: "x" } }`);
  expectDiagnostics(r, ['E_PARAM_TYPE 4:78']);
});

validate('a conditional rule (if/then) reports the failing rule, noting why it applies', () => {
  assert.equal(reported('stage s = sh { command: "ls" }\nstage t = sh { command: "ls", shell: false }'), [
    ['E_MISSING_PARAM', 'stage `s` (kind `sh`) needs param `shell`', 1, 7,
      ['`shell`: Run through a shell.', 'this rule applies because of the values of other params']],
    ['E_PARAM_VALUE', 'param `shell` must be true, got false', 2, 38, ['this rule applies because of the values of other params']],
  ]);
  expectPipeline(parsePipe('stage s = sh { command: "ls", shell: true }\nstage t = sh { command: ["ls"] }'));
  // A branch's own description replaces the general note, for every error under it.
  const sh = TEST_KINDS.sh!;
  const explained = { ...TEST_KINDS, sh: { ...sh, params: { ...sh.params, then: { ...(sh.params as unknown as { then: object }).then, description: 'a string command needs shell: true' } } } };
  assert.equal(reported('stage s = sh { command: "ls" }\nstage t = sh { command: "ls", shell: false }', explained as Record<string, StageKind>).map((d) => (d as unknown[])[4]), [
    ['`shell`: Run through a shell.', 'a string command needs shell: true'],
    ['a string command needs shell: true'],
  ]);
});

validate('an unknown kind suggests the closest one and lists the kinds', () => {
  assert.equal(reported('stage a = report_ { }', { report: TEST_KINDS.report!, sft: TEST_KINDS.sft! }), [
    ['E_UNKNOWN_KIND', 'unknown stage kind `report_`', 1, 11, ['did you mean `report`?', 'known kinds: report, sft']],
  ]);
});

validate('unknown and missing inputs name the kind\'s inputs', () => {
  assert.equal(reported(`${PREAMBLE}\nstage s = sft(modle: base) { }`), [
    ['E_MISSING_INPUT', 'stage `s` (kind `sft`) needs input `model`', 4, 7, ['`model`: Model to train.']],
    ['E_MISSING_INPUT', 'stage `s` (kind `sft`) needs input `data`', 4, 7, ['`data`: Training data.']],
    ['E_UNKNOWN_INPUT', 'stage kind `sft` has no input `modle`', 4, 15, ['did you mean `model`?', 'inputs of `sft`: model, data']],
  ]);
});

validate('an optional input may be left out', () => {
  expectPipeline(parsePipe(`${PREAMBLE}\nstage e = evaluate(model: base, data: data) { }`));
});

validate('a collection to a single input and a single stage to a collection input are E_INPUT_ARITY', () => {
  const loop = 'for each x in [1, 2] { stage w = sft(model: base, data: paused) { } }';
  assert.equal(reported(`${PREAMBLE}\n${loop}\nstage e = evaluate(model: w[*], data: data) { }\nstage r = report(runs: base) { }`), [
    ['E_INPUT_ARITY', 'input `model` of `evaluate` takes one stage, got a collection of 2', 5, 27, ['refer to one stage by its name (inside a loop, the same variant)']],
    ['E_INPUT_ARITY', 'input `runs` of `report` takes a collection, got the single stage `base`', 6, 24, ['to pass every variant, write `base[*]`']],
  ]);
});

validate('a kind with a `*` input takes any input name, single or collection', () => {
  const stages = expectPipeline(parsePipe(`${PREAMBLE}\nfor each x in [1, 2] { stage w = surgery { } }\nstage s = sh(prep: paused, runs: w[*]) { command: ["ls"] }`)).stages;
  const sh = stages.find((s) => s.name === 's')!;
  assert.equal([sh.inputs.prep!.stages, sh.inputs.runs!.stages], [['paused'], ['w[x=1]', 'w[x=2]']]);
});

validate('a cycle names every stage in it, in order, and is reported once for a loop', () => {
  assert.equal(reported('stage d = gsm8k { path: "p" }\nstage a = sft(model: c, data: d) { }\nstage b = sft(model: a, data: d) { }\nstage c = sft(model: b, data: d) { }'), [
    ['E_CYCLE', 'stages depend on each other in a cycle: `a` → `c` → `b` → `a`', 3, 22, []],
  ]);
  const r = parsePipe('stage d = gsm8k { path: "p" }\nfor each x in [1, 2] {\n  stage a = sft(model: b, data: d) { }\n  stage b = sft(model: a, data: d) { }\n}');
  assert.equal(r.diagnostics.map((d) => d.message), ['stages depend on each other in a cycle: `a[x=1]` → `b[x=1]` → `a[x=1]`'], describe(r));
});

validate('a stage taking itself as input is a cycle of one', () => {
  assert.equal(reported('stage d = gsm8k { path: "p" }\nstage a = sft(model: a, data: d) { }'), [
    ['E_CYCLE', 'stages depend on each other in a cycle: `a` → `a`', 2, 22, []],
  ]);
});

validate('the order puts every stage after its inputs, depth first from the file order', () => {
  const stages = expectPipeline(parsePipe([
    'stage r = report(runs: e[*]) { }',
    'stage data = gsm8k { path: "p" }',
    'for each x in [1, 2] {',
    '  stage e = evaluate(model: w, data: data) { }',
    '  stage w = sft(model: base, data: data) { }',
    '}',
    'stage base = surgery { }',
  ].join('\n'))).stages;
  assert.equal(stages.map((s) => s.name), ['base', 'data', 'w[x=1]', 'e[x=1]', 'w[x=2]', 'e[x=2]', 'r']);
});

validate('three mistakes of different phases give three diagnostics at once', () => {
  const r = parsePipe([
    'stage data = gsm8k { path: 1 }',
    'stage s = sft(model: dta, data: data) { }',
    'stage e = evaluate(model: s, data: data) { max_tokens: 9 }',
  ].join('\n'));
  expectDiagnostics(r, ['E_PARAM_TYPE 1:28', 'E_UNKNOWN_REFERENCE 2:22', 'E_UNKNOWN_PARAM 3:44']);
  assert.is(r.pipeline, null);
});

validate.run();
