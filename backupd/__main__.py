from backupd.daemon import main

main()
