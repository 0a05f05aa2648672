// The registry of stage kinds by name; kept cheap to import (kinds load heavy code such as tfjs inside run()).
import type { StageKind } from './kind.ts';
import { SH } from './sh.ts';
import { GSM8K } from './gsm8k.ts';
import { SYNTHETIC_MATH } from './synthetic-math.ts';
import { INJECT_PAUSES } from './inject-pauses.ts';
import { REPORT } from './report.ts';
import { INIT_MODEL } from './init-model.ts';
import { ADD_PAUSE_TOKEN } from './add-pause-token.ts';
import { SFT } from './sft.ts';
import { EVALUATE } from './evaluate.ts';

export const STAGE_KINDS: Record<string, StageKind> = {
  [SH.name]: SH,
  [GSM8K.name]: GSM8K,
  [SYNTHETIC_MATH.name]: SYNTHETIC_MATH,
  [INJECT_PAUSES.name]: INJECT_PAUSES,
  [REPORT.name]: REPORT,
  [INIT_MODEL.name]: INIT_MODEL,
  [ADD_PAUSE_TOKEN.name]: ADD_PAUSE_TOKEN,
  [SFT.name]: SFT,
  [EVALUATE.name]: EVALUATE,
};
