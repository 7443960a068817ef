// `vsock-connect PORT [CID]`: a guest-side client for host services. Connects
// to vsock PORT on CID (2, the host, by default), copies stdin to the
// connection and the connection to stdout. Installed as /bin/vsock-connect,
// a link to /init.
#pragma once

namespace snapvm::guest {

int vsock_connect_main(int argc, char** argv);

}  // namespace snapvm::guest
