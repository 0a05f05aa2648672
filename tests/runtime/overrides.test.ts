// Tests for runtime/overrides.ts: how a `-p NAME=VALUE` value is read.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseOverride, type Override } from '../../runtime/overrides.ts';

const overrides = suite('parseOverride');

const valueOf = (text: string) => (parseOverride(text) as Override).value;

overrides('a literal of the language is that value, a negative number and nested lists and objects included', () => {
  assert.equal(
    ['n=1e-4', 'n=-1', 's="a b"', 'b=true', 'z=null', 'l=[1, {r: -2}, "a", null]'].map(valueOf),
    [0.0001, -1, 'a b', true, null, [1, { r: -2 }, 'a', null]],
  );
});

overrides('other text is the text itself, even where it would compute as an expression', () => {
  assert.equal(['p=embed+head', 'd=2024-01', 'x=1+1', 'w=True', 'e='].map(valueOf), ['embed+head', '2024-01', '1+1', 'True', '']);
});

overrides('text that opens a string, list or object but is not one is an error saying what is wrong', () => {
  assert.equal(['tag="x-${steps}"', 'lrs=[0.1, 0.2', 'o={r: 8', 'l=[1] 2', 'l=[1 + 1]', 'n=1e999'].map(parseOverride), [
    '-p tag="x-${steps}": the value looks like a string but is not one: a -p value cannot hold names, operators or `${...}`',
    '-p lrs=[0.1, 0.2: the value looks like a list but is not one: expected `]`, found the end of the file',
    '-p o={r: 8: the value looks like an object but is not one: expected `}`, found the end of the file',
    '-p l=[1] 2: the value looks like a list but is not one: text follows its end: `2`',
    '-p l=[1 + 1]: the value looks like a list but is not one: a -p value cannot hold names, operators or `${...}`',
    '-p n=1e999: the value looks like a number but is not one: the number is too large to represent',
  ]);
});

overrides.run();
