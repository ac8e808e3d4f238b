//! `ivshmem-docgen OUTDIR`: writes the man pages and the bash and zsh
//! completions of `ivshmem`, `ivshmem-server`, `ivshmem-client` and
//! `ivshmem-vmrun` under OUTDIR (`man/manS/`, `completions/{bash,zsh}/`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: ivshmem-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match ivshmem_docgen::generate(std::path::Path::new(out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ivshmem-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}
