/** The appliance's Node-RED settings folder. */
export const FLOWS_CONFIG_DIR = '/etc/portcullis-flows';
/** Where systemd's LoadCredentialEncrypted= finds credentials. */
export const CREDSTORE_DIR = '/etc/credstore.encrypted';
