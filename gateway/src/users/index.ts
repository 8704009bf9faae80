export { UserError } from './errors.ts';
export { passwordSchema, UserService, usernameSchema } from './service.ts';
