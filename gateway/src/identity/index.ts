export {
  type CrlView,
  fetchCrl,
  RevocationIndex,
  RevocationService,
  verifyCrl,
} from './crl.ts';
export { type AddPskDevice, type CredentialView, deviceIdSchema, IdentityService } from './devices.ts';
export { IdentityError } from './errors.ts';
