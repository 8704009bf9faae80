export { type AddPskDevice, type CredentialView, deviceIdSchema, IdentityService } from './devices.ts';
export { IdentityError } from './errors.ts';
