"""The commands of backupctl: one function per command, taking an Invocation, returning the exit code."""



