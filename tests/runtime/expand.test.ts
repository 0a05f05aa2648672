// Tests for runtime/expand.ts: generated variant names, references across loops, lets and scoping.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { StageInstance } from '../../runtime/pipeline.ts';
import { expectDiagnostics, expectPipeline, parsePipe, PREAMBLE } from '../helpers/pipe.ts';

const expand = suite('expand');

function names(text: string, declared?: string): string[] {
  const stages = expectPipeline(parsePipe(text)).stages;
  return stages.filter((s) => declared === undefined || s.declaredName === declared).map((s) => s.name);
}

function stage(stages: StageInstance[], name: string): StageInstance {
  const s = stages.find((x) => x.name === name);
  assert.ok(s, `no stage ${name} in ${stages.map((x) => x.name).join(', ')}`);
  return s!;
}

function inputsOf(s: StageInstance): Record<string, string[]> {
  return Object.fromEntries(Object.entries(s.inputs).map(([k, b]) => [k, b.stages]));
}

expand('a 2×3 loop makes six variants, first variable outermost, default labels var=value', () => {
  const text = `${PREAMBLE}\nfor each head in [true, false], lm in ["none", "lm_head", "lm_head+embed"] {\n  stage warm = sft(model: base, data: paused) { }\n}`;
  assert.equal(names(text, 'warm'), [
    'warm[head=true,lm=none]',
    'warm[head=true,lm=lm_head]',
    'warm[head=true,lm=lm_head+embed]',
    'warm[head=false,lm=none]',
    'warm[head=false,lm=lm_head]',
    'warm[head=false,lm=lm_head+embed]',
  ]);
});

expand('a 2×2×3 loop with a where filter keeps the matching variants in order', () => {
  const text = [
    PREAMBLE,
    'for each embed in [true, false], head in [true, false], lm in ["none", "lm_head", "lm_head+embed"]',
    '    where embed or head {',
    '  stage warm = sft(model: base, data: paused) { }',
    '}',
  ].join('\n');
  assert.equal(names(text, 'warm'), [
    'warm[embed=true,head=true,lm=none]',
    'warm[embed=true,head=true,lm=lm_head]',
    'warm[embed=true,head=true,lm=lm_head+embed]',
    'warm[embed=true,head=false,lm=none]',
    'warm[embed=true,head=false,lm=lm_head]',
    'warm[embed=true,head=false,lm=lm_head+embed]',
    'warm[embed=false,head=true,lm=none]',
    'warm[embed=false,head=true,lm=lm_head]',
    'warm[embed=false,head=true,lm=lm_head+embed]',
  ]);
});

expand('a named template renders each label, with a where filter', () => {
  const text = [
    PREAMBLE,
    'for each embed in [true, false], head in [true, false], lm in ["none", "lm_head", "lm_head+embed"]',
    '    where embed or head',
    '    named "e=${embed},h=${head},lm=${lm}" {',
    '  stage warm = sft(model: base, data: paused) { }',
    '}',
  ].join('\n');
  assert.equal(names(text, 'warm'), [
    'warm[e=true,h=true,lm=none]',
    'warm[e=true,h=true,lm=lm_head]',
    'warm[e=true,h=true,lm=lm_head+embed]',
    'warm[e=true,h=false,lm=none]',
    'warm[e=true,h=false,lm=lm_head]',
    'warm[e=true,h=false,lm=lm_head+embed]',
    'warm[e=false,h=true,lm=none]',
    'warm[e=false,h=true,lm=lm_head]',
    'warm[e=false,h=true,lm=lm_head+embed]',
  ]);
});

expand('a 2×3 named loop with a template using an expression', () => {
  const text = `${PREAMBLE}\nfor each lr in [1, 2], ep in range(1, 4) named "lr\${lr * 10}-ep\${ep}" {\n  stage t = sft(model: base, data: paused) { epochs: ep }\n}`;
  assert.equal(names(text, 't'), ['t[lr10-ep1]', 't[lr10-ep2]', 't[lr10-ep3]', 't[lr20-ep1]', 't[lr20-ep2]', 't[lr20-ep3]']);
});

expand('labels print numbers, null and nested values as JSON, strings bare', () => {
  const text = `${PREAMBLE}\nfor each a in [0.5, -2, null], b in ["x y", [1, "z"]] {\n  stage t = surgery { }\n}`;
  assert.equal(names(text, 't'), [
    't[a=0.5,b=x y]', 't[a=0.5,b=[1,"z"]]', 't[a=-2,b=x y]', 't[a=-2,b=[1,"z"]]', 't[a=null,b=x y]', 't[a=null,b=[1,"z"]]',
  ]);
});

expand('each instance records its loop variables, in loop order', () => {
  const stages = expectPipeline(parsePipe(`${PREAMBLE}\nfor each b in [1], a in ["x"] { stage t = surgery { } }`)).stages;
  assert.equal(stage(stages, 't[b=1,a=x]').variant, { b: 1, a: 'x' });
  assert.equal(stage(stages, 'data').variant, {});
});

expand('inside a loop a loop stage means the same variant; an outside stage is plain', () => {
  const stages = expectPipeline(parsePipe([
    PREAMBLE,
    'for each x in [1, 2] {',
    '  stage warm = sft(model: base, data: paused) { epochs: x }',
    '  stage eval = evaluate(model: warm, data: data) { }',
    '}',
  ].join('\n'))).stages;
  assert.equal(inputsOf(stage(stages, 'eval[x=2]')), { model: ['warm[x=2]'], data: ['data'] });
  assert.equal(stage(stages, 'eval[x=2]').inputs.model!.many, false);
});

expand('NAME[*] collects every variant in variant order; NAME[var=value] the matching ones', () => {
  const stages = expectPipeline(parsePipe([
    PREAMBLE,
    'stage all = report(runs: w[*]) { }',
    'stage some = report(runs: w[b="y"]) { }',
    'stage one = report(runs: w[a=2, b="x"]) { }',
    'for each a in [1, 2], b in ["x", "y"] { stage w = sft(model: base, data: paused) { epochs: a } }',
  ].join('\n'))).stages;
  assert.equal(inputsOf(stage(stages, 'all')).runs, ['w[a=1,b=x]', 'w[a=1,b=y]', 'w[a=2,b=x]', 'w[a=2,b=y]']);
  assert.equal(inputsOf(stage(stages, 'some')).runs, ['w[a=1,b=y]', 'w[a=2,b=y]']);
  assert.equal(inputsOf(stage(stages, 'one')).runs, ['w[a=2,b=x]']);
  assert.equal(stage(stages, 'one').inputs.runs!.many, true);
});

expand('a selector inside another loop may use that loop\'s variables', () => {
  const stages = expectPipeline(parsePipe([
    PREAMBLE,
    'for each a in [1, 2], b in [1, 2] { stage w = sft(model: base, data: paused) { epochs: a } }',
    'for each a in [1, 2] { stage r = report(runs: w[a=a]) { title: "a=${a}" } }',
  ].join('\n'))).stages;
  assert.equal(inputsOf(stage(stages, 'r[a=2]')).runs, ['w[a=2,b=1]', 'w[a=2,b=2]']);
});

expand('stages may refer forward; the order is topological', () => {
  const stages = expectPipeline(parsePipe([
    'stage eval = evaluate(model: warm, data: data) { }',
    'stage warm = sft(model: base, data: data) { }',
    'stage base = surgery { }',
    'stage data = gsm8k { path: "d" }',
  ].join('\n'))).stages;
  assert.equal(stages.map((s) => s.name), ['base', 'data', 'warm', 'eval']);
});

expand('lets may use earlier lets, expressions and interpolation', () => {
  const stages = expectPipeline(parsePipe([
    'let lr = 5e-5',
    'let scale = 2',
    'let tag = "run-${lr}-x${scale * 2}"',
    'stage data = gsm8k { path: tag, val_fraction: lr * scale * 1000 }',
  ].join('\n'))).stages;
  assert.equal(stage(stages, 'data').params, { path: 'run-0.00005-x4', val_fraction: 0.1 });
});

expand('params are evaluated per variant, with conditionals over loop variables', () => {
  const stages = expectPipeline(parsePipe([
    PREAMBLE,
    'let lr = 0.001',
    'for each head in [true, false], lm in ["none", "lm_head+embed"] {',
    '  stage warm = sft(model: base, data: paused) {',
    '    train_lm_head: lm != "none"',
    '    train_embeddings: lm == "lm_head+embed"',
    '    lr: if head then lr else lr * 2',
    '  }',
    '}',
  ].join('\n'))).stages;
  assert.equal(stage(stages, 'warm[head=false,lm=lm_head+embed]').params, {
    train_lm_head: true, train_embeddings: true, lr: 0.002, epochs: 1,
  });
  assert.equal(stage(stages, 'warm[head=true,lm=none]').params, {
    train_lm_head: false, train_embeddings: false, lr: 0.001, epochs: 1,
  });
});

expand('a let inside a loop is evaluated per variant and visible after it in that loop', () => {
  const stages = expectPipeline(parsePipe(`${PREAMBLE}\nfor each x in [1, 2] {\n  let ep = x * 3\n  stage t = sft(model: base, data: paused) { epochs: ep }\n}`)).stages;
  assert.equal([stage(stages, 't[x=1]').params.epochs, stage(stages, 't[x=2]').params.epochs], [3, 6]);
});

expand('a loop let is not visible outside its loop, and the note says where it is', () => {
  const r = parsePipe(`for each x in [1] { let ep = x }\nlet y = ep`);
  expectDiagnostics(r, ['E_UNKNOWN_VARIABLE 2:9']);
  assert.equal(r.diagnostics[0]!.notes, ['`ep` is defined at line 1:25, inside a `for each`; it is visible only after it, in that loop']);
});

expand('a let used before its definition says it is defined later', () => {
  const r = parsePipe('stage d = gsm8k { path: p }\nlet p = "x"');
  expectDiagnostics(r, ['E_UNKNOWN_VARIABLE 1:25']);
  assert.equal(r.diagnostics[0]!.notes, ['`p` is defined later, at line 2:5; a let must come before its use']);
});

expand('a let that uses its own name says it refers to itself, at the top level and in a loop', () => {
  const r = parsePipe('let a = 1\nlet c = c + a\nfor each x in [1] { let d = [d] }');
  expectDiagnostics(r, ['E_UNKNOWN_VARIABLE 2:9', 'E_UNKNOWN_VARIABLE 3:30']);
  assert.equal(r.diagnostics.map((d) => d.notes), [
    ['`c` refers to itself: a let\'s value cannot use the let it defines'],
    ['`d` refers to itself: a let\'s value cannot use the let it defines'],
  ]);
});

expand('a loop variable used outside its loop says which loop it belongs to', () => {
  const r = parsePipe('for each lr in [1] { }\nlet y = lr');
  expectDiagnostics(r, ['E_UNKNOWN_VARIABLE 2:9']);
  assert.equal(r.diagnostics[0]!.notes, ['`lr` is the variable of the `for each` at line 1:10 and exists only inside that loop']);
});

expand('a stage name used as a value says stages are inputs', () => {
  const r = parsePipe('stage d = gsm8k { path: "x" }\nlet p = d');
  assert.equal(r.diagnostics[0]!.notes, ['`d` is a stage; stages are used as inputs, e.g. `(data: d)`']);
});

expand('a loop variable named like a let is an error at the variable, as it would hide the let and its -p', () => {
  const r = parsePipe(`${PREAMBLE}\nlet ep = 9\nfor each ep in [2] { stage t = sft(model: base, data: paused) { epochs: ep } }`);
  expectDiagnostics(r, ['E_DUPLICATE_NAME 5:10']);
  assert.equal([r.diagnostics[0]!.message, r.diagnostics[0]!.notes], [
    '`ep` is already defined; this loop variable needs another name',
    ['first defined at line 4:5', 'inside the loop `ep` would be the loop variable, hiding the let (and any `-p ep=...`)'],
  ]);
});

expand('a let or stage declared after a loop with a variable of its name is the second definition', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each ep in [2] { stage t = sft(model: base, data: paused) { epochs: ep } }\nlet ep = 9\nstage t2 = sft(model: base, data: paused) { epochs: ep }\nstage ep = surgery { }`);
  expectDiagnostics(r, ['E_DUPLICATE_NAME 5:5', 'E_DUPLICATE_NAME 7:7']);
  assert.equal(r.diagnostics.map((d) => [d.message, d.notes]), [
    ['`ep` is already defined; this let needs another name', ['first defined at line 4:10']],
    ['`ep` is already defined; this stage needs another name', ['first defined at line 4:10']],
  ]);
});

expand('loops may reuse a variable name, and a stage may be named like a variable of no loop', () => {
  const text = `${PREAMBLE}\nfor each ep in [1] { stage t = sft(model: base, data: paused) { epochs: ep } }\nfor each ep in [2] { stage u = sft(model: base, data: paused) { epochs: ep } }`;
  assert.equal(names(text).slice(3), ['t[ep=1]', 'u[ep=2]']);
});

expand('an error in some variants of a loop body is reported once, naming those variants', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each y in [5, 6], x in [1, 0] { stage t = sft(model: base, data: paused) { epochs: 2 / x } }`);
  expectDiagnostics(r, ['E_DIVISION_BY_ZERO 4:88']);
  assert.equal(r.diagnostics[0]!.notes, ['in the variants `y=5,x=0`, `y=6,x=0`']);
});

expand('an error in every variant of a loop body is reported once, without naming a variant', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each y in range(0, 20), x in [true, false] { stage t = sft(model: base, data: paused) { epochs: 2 / x } }`);
  expectDiagnostics(r, ['E_EXPR_TYPE 4:101']);
  assert.equal(r.diagnostics[0]!.notes ?? [], []);
});

expand('a mistake in a nested loop is one diagnostic; its stages raise no further errors', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each a in [1] {\n  for each b in [2] { stage w = surgery { } }\n}\nstage r = report(runs: w[*]) { }`);
  expectDiagnostics(r, ['E_NESTED_LOOP 5:3']);
});

expand('a `named` label with an unknown variable is reported even when the `where` on its line fails too', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each x in [1, 2] where x + "a" > 1 named "\${x}-\${zzz}" { stage w = surgery { } }`);
  expectDiagnostics(r, ['E_EXPR_TYPE 4:28', 'E_UNKNOWN_VARIABLE 4:54']);
  assert.is(r.diagnostics[1]!.message, 'unknown variable `zzz`');
});

expand('a loop whose values fail makes no variant and no follow-up errors', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each a in nope { stage w = surgery { } }\nstage r = report(runs: w[a=1]) { }`);
  expectDiagnostics(r, ['E_UNKNOWN_VARIABLE 4:15']);
});

expand('variants with one generated name are one diagnostic listing the clashes', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each a in [1, 2], b in [3, 4] named "a\${a}" { stage w = surgery { } }`);
  expectDiagnostics(r, ['E_NAME_COLLISION 4:41']);
  assert.equal(r.diagnostics[0]!.notes, [
    'both named `a1`: {a=1, b=3} and {a=1, b=4}',
    'both named `a2`: {a=2, b=3} and {a=2, b=4}',
    'make the `named` label use every variable that differs',
  ]);
});

expand('a value listed twice is one diagnostic at its repeat, not a clash of names, and the rest of the loop expands', () => {
  const r = parsePipe(`${PREAMBLE}\nlet xs = [1, 2, 2]\nfor each x in xs, y in ["a", "b", "a", "a"] { stage w = sft(model: base, data: paused) { epochs: "x" } }`);
  expectDiagnostics(r, ['E_NAME_COLLISION 4:17', 'E_NAME_COLLISION 5:35', 'E_PARAM_TYPE 5:98']);
  assert.equal(r.diagnostics.slice(0, 2).map((d) => [d.message, d.notes]), [
    ['the value 2 appears twice in the list of `x` (items 2, 3)', ['first at line 4:14', '`x` ranges over `xs` at line 5:15']],
    ['the value "a" appears 3 times in the list of `y` (items 1, 3, 4)', ['first at line 5:25']],
  ]);
});

expand('a repeat in a computed list is shown at the list', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each x in range(0, 2) + [1] { stage w = surgery { } }`);
  expectDiagnostics(r, ['E_NAME_COLLISION 4:15']);
  assert.equal([r.diagnostics[0]!.message, r.diagnostics[0]!.notes], ['the value 1 appears twice in the list of `x` (items 2, 3)', undefined]);
});

expand('a loop variable declared twice is that error alone, without a clash of the names it would make', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each a in [1, 2], a in [3] { stage w = surgery { } }`);
  expectDiagnostics(r, ['E_DUPLICATE_LOOP_VAR 4:23']);
});

expand('labels and interpolation write fractions to 15 significant digits; the parameter keeps the exact value', () => {
  const text = 'let base_lr = 0.1\nfor each lr in [base_lr * 3, 5e-5, 9007199254740991] { stage s = sh { command: ["echo", "${lr}", "${[0.1 + 0.2]}"], env: { LR: lr } } }';
  const stages = expectPipeline(parsePipe(text)).stages;
  assert.equal(stages.map((s) => s.name), ['s[lr=0.3]', 's[lr=0.00005]', 's[lr=9007199254740991]']);
  assert.equal(stages[0]!.params.command, ['echo', '0.3', '[0.3]']);
  assert.equal([stages[0]!.params.env, stages[0]!.variant], [{ LR: 0.30000000000000004 }, { lr: 0.30000000000000004 }]);
});

expand('a 10×10×10 loop expands and validates into 1,000 stages', () => {
  const text = [
    PREAMBLE,
    'for each a in range(10), b in range(10), c in range(10) {',
    '  stage w = sft(model: base, data: paused) { lr: 1e-4 * (a + 1), epochs: b + 1, train_lm_head: c % 2 == 0 }',
    '}',
    'stage table = report(runs: w[*]) { }',
  ].join('\n');
  const stages = expectPipeline(parsePipe(text)).stages;
  assert.is(stages.length, 1004);
  assert.is(new Set(stages.map((s) => s.name)).size, 1004);
  assert.is(stages[3]!.name, 'w[a=0,b=0,c=0]');
  assert.equal(stage(stages, 'w[a=9,b=4,c=3]').params, { lr: 0.001, epochs: 5, train_lm_head: false, train_embeddings: false });
  assert.is(stage(stages, 'table').inputs.runs!.stages.length, 1000);
  assert.is(stages.at(-1)!.name, 'table');
});

expand.run();
