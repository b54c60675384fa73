//! The `quorate` command line; its definitions and commands live in `quorate::cli`.

fn main() -> std::process::ExitCode {
    quorate::cli::main()
}
