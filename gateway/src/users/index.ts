export { UserError } from './errors.ts';
export {
  argon2Hasher,
  type PasswordHasher,
  passwordSchema,
  UserService,
  usernameSchema,
} from './service.ts';
export { sourceOf } from './source-failures.ts';
