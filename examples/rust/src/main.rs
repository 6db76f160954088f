//! Predicts the first N MNIST test images with a model saved by `nerve train --save`, through
//! Nerve's C API (include/nerve_model.h): the same classes `nerve predict MODEL --count N` prints.
//!
//!     cargo run --release -- model.safetensors [N]
use std::ffi::{c_char, c_int, CStr, CString};
use std::process::ExitCode;

type Status = c_int;
const OK: Status = 0;

#[allow(non_camel_case_types)]
enum nerve_model {}
#[allow(non_camel_case_types)]
enum nerve_dataset {}

extern "C" {
    fn nerve_model_create(out: *mut *mut nerve_model) -> Status;
    fn nerve_model_free(m: *mut nerve_model);
    fn nerve_model_last_error(m: *const nerve_model) -> *const c_char;
    fn nerve_model_load(m: *mut nerve_model, path: *const c_char) -> Status;
    fn nerve_model_predict(m: *mut nerve_model, classes: *mut i32, x: *const f32, n: i64) -> Status;
    fn nerve_model_summary(m: *mut nerve_model) -> *const c_char;
    fn nerve_dataset_create(out: *mut *mut nerve_dataset) -> Status;
    fn nerve_dataset_free(d: *mut nerve_dataset);
    fn nerve_dataset_last_error(d: *const nerve_dataset) -> *const c_char;
    fn nerve_dataset_load(d: *mut nerve_dataset, data_toml: *const c_char) -> Status;
    fn nerve_dataset_size(d: *const nerve_dataset, split: c_int, count: *mut i64, size: *mut i64) -> Status;
    fn nerve_dataset_copy(d: *const nerve_dataset, split: c_int, x: *mut f32, y: *mut i32) -> Status;
}

const TEST: c_int = 2;

/// A model handle, freed when dropped.
struct Model(*mut nerve_model);

impl Model {
    fn load(path: &str) -> Result<Model, String> {
        let mut m = std::ptr::null_mut();
        if unsafe { nerve_model_create(&mut m) } != OK {
            return Err("nerve_model_create failed".into());
        }
        let model = Model(m);
        let c_path = CString::new(path).map_err(|e| e.to_string())?;
        model.check(unsafe { nerve_model_load(m, c_path.as_ptr()) })?;
        Ok(model)
    }

    fn check(&self, status: Status) -> Result<(), String> {
        if status == OK {
            return Ok(());
        }
        Err(unsafe { CStr::from_ptr(nerve_model_last_error(self.0)) }.to_string_lossy().into_owned())
    }

    fn summary(&self) -> String {
        let text = unsafe { nerve_model_summary(self.0) };
        if text.is_null() {
            return String::new();
        }
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }

    fn predict(&self, x: &[f32], n: usize) -> Result<Vec<i32>, String> {
        let mut classes = vec![0i32; n];
        self.check(unsafe { nerve_model_predict(self.0, classes.as_mut_ptr(), x.as_ptr(), n as i64) })?;
        Ok(classes)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { nerve_model_free(self.0) }
    }
}

/// The MNIST test images and labels, prepared as `nerve train` prepares them.
/// (Flat rows of 784 values; a CNN takes the same values as [28, 28, 1] images.)
fn test_images() -> Result<(Vec<f32>, Vec<i32>, usize), String> {
    let mut d = std::ptr::null_mut();
    if unsafe { nerve_dataset_create(&mut d) } != OK {
        return Err("nerve_dataset_create failed".into());
    }
    let error = |d: *mut nerve_dataset| unsafe { CStr::from_ptr(nerve_dataset_last_error(d)) }.to_string_lossy().into_owned();
    let toml = CString::new("[data]\nset = \"mnist\"\n").unwrap();
    let result = (|| {
        if unsafe { nerve_dataset_load(d, toml.as_ptr()) } != OK {
            return Err(error(d));
        }
        let (mut count, mut size) = (0i64, 0i64);
        if unsafe { nerve_dataset_size(d, TEST, &mut count, &mut size) } != OK {
            return Err(error(d));
        }
        let mut x = vec![0f32; (count * size) as usize];
        let mut y = vec![0i32; count as usize];
        if unsafe { nerve_dataset_copy(d, TEST, x.as_mut_ptr(), y.as_mut_ptr()) } != OK {
            return Err(error(d));
        }
        Ok((x, y, size as usize))
    })();
    unsafe { nerve_dataset_free(d) };
    result
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: nerve-predict MODEL.safetensors [COUNT]")?;
    let count: usize = args.get(2).map(|s| s.parse().map_err(|_| format!("bad count '{s}'"))).transpose()?.unwrap_or(100);
    let model = Model::load(path)?;
    eprintln!("{}", model.summary());
    let (x, labels, size) = test_images()?;
    let count = count.min(labels.len());
    let classes = model.predict(&x[..count * size], count)?;
    let mut right = 0;
    for (i, (c, label)) in classes.iter().zip(&labels).enumerate() {
        println!("{i}: predicted {c}, label {label}");
        right += (c == label) as usize;
    }
    println!("{right}/{count} correct");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
