"""Text for people, from what backupd answers: pure functions, no connection, no terminal."""



