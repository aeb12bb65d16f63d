from microlatent.cli import main

main()
