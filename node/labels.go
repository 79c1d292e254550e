package node

// Labels Capstan puts on every runtime pod and container it creates. A pod
// or container without LabelNode is never touched.
const (
	LabelPod       = "capstan.pod"        // <namespace>/<name>
	LabelNode      = "capstan.node"       // the node daemon's name
	LabelUID       = "capstan.uid"        // the Pod object's uid
	LabelSpecHash  = "capstan.spec-hash"  // hash of the pod spec it runs
	LabelContainer = "capstan.container"  // the container's name in the pod spec
	LabelAttempt   = "capstan.attempt"    // 0 for the first instance, +1 per restart
	LabelHostPorts = "capstan.host-ports" // the pod's host ports: "tcp/8080,udp/53"
)
