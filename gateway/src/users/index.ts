export {
  ControlError,
  type ControlToken,
  ControlTokens,
  SCOPES,
  type Scope,
} from './control-tokens.ts';
export { UserError } from './errors.ts';
export {
  argon2Hasher,
  type PasswordHasher,
  passwordSchema,
  UserService,
  usernameSchema,
} from './service.ts';
export { ABSOLUTE_MS, IDLE_MS, REAUTH_MS, type UiSession, UiSessions } from './sessions.ts';
export { sourceOf } from './source-failures.ts';
