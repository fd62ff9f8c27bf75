from cadft.eval.cli import main

main()
