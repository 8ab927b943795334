package spec

import "os/exec"

var whichCommand = exec.LookPath
