// Token types of the .pipe language and its lexer modes (strings with `${expr}` interpolation get modes of their own).
import type { TokenType } from 'chevrotain';
import { createToken, Lexer } from './chevrotain.ts';

export const MODE_MAIN = 'main';
export const MODE_STRING = 'string';
/** Inside `${ ... }` and the objects nested in it: every `{` pushes this mode and every `}` pops one level. */
export const MODE_NESTED = 'nested';

export const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r\n]+/, group: Lexer.SKIPPED, line_breaks: true });
export const Comment = createToken({ name: 'Comment', pattern: /#[^\r\n]*/, group: Lexer.SKIPPED });

export const Identifier = createToken({ name: 'Identifier', pattern: /[A-Za-z_][A-Za-z0-9_]*/, label: 'a name' });

function keyword(word: string): TokenType {
  return createToken({ name: `Kw_${word}`, pattern: word, longer_alt: Identifier, label: `\`${word}\`` });
}

export const Include = keyword('include');
export const Let = keyword('let');
export const Stage = keyword('stage');
export const For = keyword('for');
export const Each = keyword('each');
export const In = keyword('in');
export const Where = keyword('where');
export const Named = keyword('named');
export const If = keyword('if');
export const Then = keyword('then');
export const Else = keyword('else');
export const True = keyword('true');
export const False = keyword('false');
export const Null = keyword('null');
export const And = keyword('and');
export const Or = keyword('or');
export const Not = keyword('not');

export const KEYWORDS = [Include, Let, Stage, For, Each, In, Where, Named, If, Then, Else, True, False, Null, And, Or, Not];

export const NumberLiteral = createToken({
  name: 'NumberLiteral',
  pattern: /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/,
  label: 'a number',
});

// Operator categories let the parser say "any comparison" while the AST keeps the exact token.
export const CompareOp = createToken({ name: 'CompareOp', pattern: Lexer.NA, label: 'a comparison' });
export const AddOp = createToken({ name: 'AddOp', pattern: Lexer.NA, label: '`+` or `-`' });
export const MulOp = createToken({ name: 'MulOp', pattern: Lexer.NA, label: '`*`, `/` or `%`' });

export const EqEq = createToken({ name: 'EqEq', pattern: '==', categories: CompareOp, label: '`==`' });
export const NotEq = createToken({ name: 'NotEq', pattern: '!=', categories: CompareOp, label: '`!=`' });
export const LtEq = createToken({ name: 'LtEq', pattern: '<=', categories: CompareOp, label: '`<=`' });
export const GtEq = createToken({ name: 'GtEq', pattern: '>=', categories: CompareOp, label: '`>=`' });
export const Lt = createToken({ name: 'Lt', pattern: '<', categories: CompareOp, label: '`<`' });
export const Gt = createToken({ name: 'Gt', pattern: '>', categories: CompareOp, label: '`>`' });
export const Equals = createToken({ name: 'Equals', pattern: '=', label: '`=`' });
export const Plus = createToken({ name: 'Plus', pattern: '+', categories: AddOp, label: '`+`' });
export const Minus = createToken({ name: 'Minus', pattern: '-', categories: AddOp, label: '`-`' });
export const Star = createToken({ name: 'Star', pattern: '*', categories: MulOp, label: '`*`' });
export const Slash = createToken({ name: 'Slash', pattern: '/', categories: MulOp, label: '`/`' });
export const Percent = createToken({ name: 'Percent', pattern: '%', categories: MulOp, label: '`%`' });

export const LParen = createToken({ name: 'LParen', pattern: '(', label: '`(`' });
export const RParen = createToken({ name: 'RParen', pattern: ')', label: '`)`' });
export const LBracket = createToken({ name: 'LBracket', pattern: '[', label: '`[`' });
export const RBracket = createToken({ name: 'RBracket', pattern: ']', label: '`]`' });
export const Comma = createToken({ name: 'Comma', pattern: ',', label: '`,`' });
export const Colon = createToken({ name: 'Colon', pattern: ':', label: '`:`' });

// Braces: the parser matches LCurly/RCurly; inside interpolations the nesting variants (their subtypes by category)
// push and pop lexer modes so the `}` that ends `${...}` is told apart from one that ends an object.
export const LCurly = createToken({ name: 'LCurly', pattern: '{', label: '`{`' });
export const RCurly = createToken({ name: 'RCurly', pattern: '}', label: '`}`' });
export const LCurlyNested = createToken({ name: 'LCurlyNested', pattern: '{', categories: LCurly, push_mode: MODE_NESTED, label: '`{`' });
export const RCurlyNested = createToken({ name: 'RCurlyNested', pattern: '}', categories: RCurly, pop_mode: true, label: '`}`' });

export const StringStart = createToken({ name: 'StringStart', pattern: '"', push_mode: MODE_STRING, label: 'a string' });
export const StringEnd = createToken({ name: 'StringEnd', pattern: '"', pop_mode: true, label: 'the closing `"`' });
export const StringText = createToken({ name: 'StringText', pattern: /(?:[^"\\$\r\n]|\$(?!\{))+/, label: 'string text' });
export const StringEscape = createToken({ name: 'StringEscape', pattern: /\\[^\r\n]?/, label: 'an escape' });
export const InterpStart = createToken({ name: 'InterpStart', pattern: '${', push_mode: MODE_NESTED, label: '`${`' });
/**
 * A line break inside a string: the string is unterminated. It ends the string mode (and, by category, ends the
 * string for the parser) so the next line lexes normally; tokenize() reports it as E_UNTERMINATED_STRING.
 */
export const StringNewline = createToken({ name: 'StringNewline', pattern: /\r?\n/, pop_mode: true, line_breaks: true, categories: StringEnd, label: 'the closing `"`' });

const PUNCTUATION = [
  EqEq, NotEq, LtEq, GtEq, Lt, Gt, Equals, Plus, Minus, Star, Slash, Percent,
  LParen, RParen, LBracket, RBracket, Comma, Colon,
];
const CATEGORIES = [CompareOp, AddOp, MulOp];

/** Tokens valid in expressions, without the braces (whose meaning differs per mode). */
const EXPRESSION_TOKENS = [WhiteSpace, Comment, ...KEYWORDS, Identifier, NumberLiteral, StringStart, ...PUNCTUATION];

/** Every token type, for the parser's vocabulary. */
export const ALL_TOKENS: TokenType[] = [
  ...EXPRESSION_TOKENS, LCurly, RCurly, LCurlyNested, RCurlyNested,
  StringEnd, StringNewline, StringText, StringEscape, InterpStart, ...CATEGORIES,
];

/** Token lists per lexer mode; the lexer itself lives in lexer.ts. */
export const LEXER_MODES = {
  [MODE_MAIN]: [...EXPRESSION_TOKENS, LCurly, RCurly],
  [MODE_STRING]: [StringEnd, StringNewline, StringText, StringEscape, InterpStart],
  [MODE_NESTED]: [...EXPRESSION_TOKENS, LCurlyNested, RCurlyNested],
};
